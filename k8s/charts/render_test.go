// Package charts tests the Helm charts under k8s/charts: rendered with the
// Helm Go SDK as `helm template` renders them, linted, decoded strictly with
// client-go's scheme and applied (server-side, dry run) to a real
// kube-apiserver. Helm ignores this directory's Go files: they are outside
// each chart's own directory.
package charts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chartcommon "helm.sh/helm/v4/pkg/chart/common"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/restmapper"

	"github.com/tributary-io/tributary/internal/charttest"
	"github.com/tributary-io/tributary/internal/testenv"
)

// TestMain stops the package's shared kube-apiserver (sharedKube) after
// every test ran, and removes the binaries testenv.Binary built.
func TestMain(m *testing.M) {
	code := m.Run()
	shared.Stop(code != 0)
	testenv.RemoveBinaries()
	os.Exit(code)
}

// render renders chart dir (relative to k8s/charts) as `helm template` does
// with the Helm v4 Go SDK (client-only dry run, the kube version of the
// test apiserver), for the values files given (relative to k8s/charts)
// plus set, as release name "rel" in namespace ns. set's keys are dotted
// paths like --set's ("gateway.token.value"), its values kept as they are
// (no string parsing). It fails the test on any render error and returns
// the manifests split into objects; a manifest with a duplicate key is a
// render error.
func render(t *testing.T, dir, ns string, valuesFiles []string, set map[string]any) []*unstructured.Unstructured {
	t.Helper()
	objs, err := renderErr(t, dir, ns, valuesFiles, set)
	if err != nil {
		t.Fatalf("render %s with %v %v: %v", dir, valuesFiles, set, err)
	}
	return objs
}

// renderErr is render that returns the error instead (for values-schema
// tests).
func renderErr(t *testing.T, dir, ns string, valuesFiles []string, set map[string]any) ([]*unstructured.Unstructured, error) {
	t.Helper()
	return charttest.Render(dir, ns, values(t, valuesFiles, set), kubeVersion(t))
}

// values is charttest.Values, failing the test on a values file it cannot
// read.
func values(t *testing.T, files []string, set map[string]any) map[string]any {
	t.Helper()
	v, err := charttest.Values(files, set)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func kubeVersion(t *testing.T) *chartcommon.KubeVersion {
	t.Helper()
	v, err := charttest.KubeVersion(testenv.RepoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// lint runs the Helm SDK's lint (helm lint level) on the chart and fails on
// errors. Warnings fail too (helm lint --strict): a chart users touch
// first should not warn.
func lint(t *testing.T, dir string, valuesFiles []string) {
	t.Helper()
	l := action.NewLint()
	l.Strict = true
	l.Namespace = "tributary"
	l.KubeVersion = kubeVersion(t)
	res := l.Run([]string{dir}, values(t, valuesFiles, nil))
	for _, m := range res.Messages {
		t.Logf("lint %s: %s", dir, m)
	}
	if len(res.Errors) > 0 {
		t.Fatalf("lint %s with %v: %v", dir, valuesFiles, errors.Join(res.Errors...))
	}
	if res.TotalChartsLinted != 1 {
		t.Fatalf("lint %s: %d charts linted, want 1", dir, res.TotalChartsLinted)
	}
}

// decodeStrict decodes every object with client-go's scheme and a strict
// serializer (unknown or duplicate fields are errors); objects of kinds not
// in the scheme are returned in other for the caller to check.
func decodeStrict(t *testing.T, objs []*unstructured.Unstructured) (typed []runtime.Object, other []*unstructured.Unstructured) {
	t.Helper()
	s := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, kjson.SerializerOptions{Strict: true})
	for _, u := range objs {
		gvk := u.GroupVersionKind()
		if !scheme.Scheme.Recognizes(gvk) {
			other = append(other, u)
			continue
		}
		data, err := u.MarshalJSON()
		if err != nil {
			t.Fatalf("%s %s: %v", gvk.Kind, u.GetName(), err)
		}
		obj, _, err := s.Decode(data, nil, nil)
		if err != nil {
			t.Fatalf("strict decode of %s %s: %v", gvk.Kind, u.GetName(), err)
		}
		typed = append(typed, obj)
	}
	return typed, other
}

// dryRunApply applies every object with server-side apply and dryRun=All
// against the real kube-apiserver k, creating the namespace first for
// real (ns, and any other namespace an object names); it fails on any
// error. Objects whose kind the apiserver does not
// know (CRDs not installed) are returned, not applied.
func dryRunApply(t *testing.T, k *testenv.Kube, ns string, objs []*unstructured.Unstructured) (skipped []*unstructured.Unstructured) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ensureNamespace(t, k, ns)
	for _, u := range objs {
		if n := u.GetNamespace(); n != "" && n != ns {
			ensureNamespace(t, k, n)
		}
	}
	dyn, err := dynamic.NewForConfig(k.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(k.Client.Discovery()))
	for _, u := range objs {
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) {
			skipped = append(skipped, u)
			continue
		}
		if err != nil {
			t.Fatalf("map %s: %v", gvk, err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			n := u.GetNamespace()
			if n == "" {
				n = ns
			}
			ri = dyn.Resource(m.Resource).Namespace(n)
		}
		data, err := u.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
			DryRun: []string{metav1.DryRunAll}, FieldManager: "tributary-chart-test", Force: new(true),
		})
		if err != nil {
			t.Fatalf("server-side dry-run apply of %s %s: %v", gvk.Kind, u.GetName(), err)
		}
	}
	return skipped
}

// ensureNamespace creates namespace ns (for real) unless it exists.
func ensureNamespace(t *testing.T, k *testenv.Kube, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := k.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", ns, err)
	}
}

// shared is the package's one kube-apiserver (each start costs seconds):
// started by the first test that asks, stopped by TestMain after the last
// test. Tests sharing it use their own namespaces.
var shared testenv.SharedKube

func sharedKube(t *testing.T) *testenv.Kube {
	t.Helper()
	return shared.Get(t)
}

// toTyped converts u into out (a typed API object) strictly: a field out
// does not have is an error.
func toTyped(u *unstructured.Unstructured, out any) error {
	data, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(out)
}
