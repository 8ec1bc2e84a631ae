// Package charttest renders the repository's Helm charts as `helm template`
// does (Helm v4 Go SDK, client-only dry run) for tests: the chart tests in
// k8s/charts and the integration tests that run the agent with what the
// agent chart renders.
package charttest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"helm.sh/helm/v4/pkg/action"
	chartcommon "helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"
)

// Release is the release name every render uses.
const Release = "rel"

// Render renders the chart in dir for vals, as release Release in
// namespace ns, for a cluster of kubeVersion (nil: Helm's default), and
// splits the manifest into objects. A manifest document with a duplicate
// key is an error (the apiserver would silently keep one of them).
func Render(dir, ns string, vals map[string]any, kubeVersion *chartcommon.KubeVersion) ([]*unstructured.Unstructured, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", dir, err)
	}
	cfg := action.NewConfiguration()
	cfg.SetLogger(slog.DiscardHandler)
	install := action.NewInstall(cfg)
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = Release
	install.Namespace = ns
	install.Replace = true // no release-name check, as helm template
	install.KubeVersion = kubeVersion
	r, err := install.RunWithContext(context.Background(), ch, vals)
	if err != nil {
		return nil, err
	}
	rel, ok := r.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("install returned %T, want *release.Release", r)
	}
	return splitManifest(rel.Manifest)
}

// splitManifest turns a rendered manifest stream into objects. Each
// document is converted with YAMLToJSONStrict, which refuses duplicate
// keys.
func splitManifest(manifest string) ([]*unstructured.Unstructured, error) {
	docs := releaseutil.SplitManifests(manifest)
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Sort(releaseutil.BySplitManifestsOrder(keys))
	var objs []*unstructured.Unstructured
	for _, k := range keys {
		doc := docs[k]
		j, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w\n%s", sourceOf(doc), err, doc)
		}
		if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
			continue // a template that rendered to nothing but comments
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			return nil, fmt.Errorf("manifest %s: %w\n%s", sourceOf(doc), err, doc)
		}
		objs = append(objs, u)
	}
	return objs, nil
}

var sourceComment = regexp.MustCompile(`# Source: (\S+)`)

func sourceOf(doc string) string {
	if m := sourceComment.FindStringSubmatch(doc); m != nil {
		return m[1]
	}
	return "(unknown template)"
}

// Values reads the values files in order (a later file wins, maps merged
// as Helm merges -f files) and applies set on top. set's keys are dotted
// paths like --set's ("gateway.token.value"); its values are kept as they
// are (no string parsing).
func Values(files []string, set map[string]any) (map[string]any, error) {
	out := map[string]any{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("values file: %w", err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("values file %s: %w", f, err)
		}
		out = mergeValues(out, m)
	}
	for k, v := range set {
		path := strings.Split(k, ".")
		m := out
		for _, p := range path[:len(path)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[path[len(path)-1]] = v
	}
	return out, nil
}

// mergeValues merges b into a: maps recursively, anything else replaced.
func mergeValues(a, b map[string]any) map[string]any {
	for k, v := range b {
		if bm, ok := v.(map[string]any); ok {
			if am, ok := a[k].(map[string]any); ok {
				a[k] = mergeValues(am, bm)
				continue
			}
		}
		a[k] = v
	}
	return a
}

var kubeVersionRE = regexp.MustCompile(`(?m)^KUBE_VERSION=(v[0-9.]+)$`)

// KubeVersion is the version of the kube-apiserver the tests run against
// (scripts/build-kube.sh under repoRoot builds it), so that templates that
// test .Capabilities.KubeVersion render as they would for that cluster.
func KubeVersion(repoRoot string) (*chartcommon.KubeVersion, error) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "scripts", "build-kube.sh"))
	if err != nil {
		return nil, err
	}
	m := kubeVersionRE.FindSubmatch(data)
	if m == nil {
		return nil, fmt.Errorf("scripts/build-kube.sh sets no KUBE_VERSION=v<x.y.z>")
	}
	return chartcommon.ParseKubeVersion(string(m[1]))
}

// Find returns the objects of kind, in render order.
func Find(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// PatchPod applies a strategic merge patch (a Kyverno mutate rule's
// patchStrategicMerge, as JSON) to pod with Kubernetes' own
// strategic-merge-patch code, which merges containers and volumes by name
// as the Pod type's patch strategy says.
func PatchPod(pod *corev1.Pod, patch []byte) (*corev1.Pod, error) {
	orig, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	merged, err := strategicpatch.StrategicMergePatch(orig, patch, corev1.Pod{})
	if err != nil {
		return nil, fmt.Errorf("strategic merge patch: %w", err)
	}
	out := &corev1.Pod{}
	dec := json.NewDecoder(bytes.NewReader(merged))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return nil, fmt.Errorf("patched pod: %w", err)
	}
	return out, nil
}
