package charts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/limits"
	"github.com/tributary-io/tributary/pkg/loadgen"
)

// TestCentralLimitsFile: gateway.limits.defaults and .clusters become the
// limits file that the gateway's own parser reads back value for value, in
// a ConfigMap mounted read-only as a directory with -limits.file pointing
// into it; existingConfigMap mounts the user's ConfigMap instead; with
// neither, no file, no flag and no volume. The values file case takes the
// path of `helm install -f` (Helm reads the numbers as float64) with large
// whole numbers, a fraction, a negative rate and a cluster named like a
// number.
func TestCentralLimitsFile(t *testing.T) {
	minimal := "examples/central-minimal.yaml"
	for _, tc := range []struct {
		name  string
		files []string
		set   map[string]any
		// configMap is the ConfigMap the gateway must mount ("" none);
		// want, when set, the file the chart renders into it.
		configMap string
		want      *limits.File
	}{
		{name: "from a values file", files: []string{minimal, "testdata/gateway-limits.yaml"}, configMap: "rel-tributary-gateway-limits", want: &limits.File{
			Defaults: limits.Cluster{SamplesPerSecond: 1000000, SamplesBurst: 10000000, LogBytesPerSecond: 0.5},
			Clusters: map[string]limits.Cluster{
				"prod-eu":    {SamplesPerSecond: 200000, MaxSeriesPerRequest: 10000, MaxLineBytes: 65536},
				"batch-jobs": {SamplesPerSecond: -1},
				"007":        {SpansPerSecond: 20000, SpansBurst: 2000000},
			},
		}},
		{name: "defaults only", files: []string{minimal}, set: map[string]any{"gateway.limits.defaults": map[string]any{"spans_per_second": 300}},
			configMap: "rel-tributary-gateway-limits", want: &limits.File{Defaults: limits.Cluster{SpansPerSecond: 300}}},
		{name: "existing ConfigMap", files: []string{minimal}, set: map[string]any{"gateway.limits.existingConfigMap": "team-limits"}, configMap: "team-limits"},
		{name: "none", files: []string{minimal}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typed, _ := decodeStrict(t, render(t, centralChart, "tributary", tc.files, tc.set))
			gw := gatewayDeployment(t, typed)
			checkSecretMounts(t, gw)
			c := gw.Spec.Template.Spec.Containers[0]
			file := flagValue(c.Args, "limits.file")
			mounted := fileConfigMap(t, gw, "limits", file)
			if mounted != tc.configMap {
				t.Fatalf("-limits.file=%q from ConfigMap %q, want ConfigMap %q", file, mounted, tc.configMap)
			}
			cms := renderedConfigMaps(typed)
			if tc.want == nil {
				if len(cms) != 0 {
					t.Fatalf("ConfigMaps %v rendered, want none", keys(cms))
				}
				return
			}
			if len(cms) != 1 || cms[tc.configMap] == nil {
				t.Fatalf("ConfigMaps %v rendered, want %s alone", keys(cms), tc.configMap)
			}
			data := cms[tc.configMap][filepath.Base(file)]
			got, err := limits.ParseFile(data)
			if err != nil {
				t.Fatalf("the gateway refuses the rendered limits file: %v\n%s", err, data)
			}
			if len(got.Clusters) == 0 {
				got.Clusters = nil // clusters: {} and no clusters read the same
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("rendered limits file reads as\n%+v\nwant\n%+v\n%s", got, tc.want, data)
			}
		})
	}
}

// gatewayDeployment is the gateway's Deployment among typed.
func gatewayDeployment(t *testing.T, typed []runtime.Object) *appsv1.Deployment {
	t.Helper()
	for _, o := range typed {
		if d, ok := o.(*appsv1.Deployment); ok && d.Name == "rel-tributary-gateway" {
			return d
		}
	}
	t.Fatal("no gateway Deployment rendered")
	return nil
}

// fileConfigMap is the ConfigMap that gw's -<name>.file=file (a gateway
// file of templates/_gateway.tpl's tributary.gatewayFiles: limits,
// shards) reads through its mounts, as key <name>.yaml ("" for no flag);
// it fails the test when such a key is mounted without the flag or the
// flag's file is in no ConfigMap volume's items.
func fileConfigMap(t *testing.T, gw *appsv1.Deployment, name, file string) string {
	t.Helper()
	key := name + ".yaml"
	pod := gw.Spec.Template.Spec
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	for _, m := range pod.Containers[0].VolumeMounts {
		cm := volumes[m.Name].ConfigMap
		if cm == nil {
			continue
		}
		holds := slices.ContainsFunc(cm.Items, func(item corev1.KeyToPath) bool { return item.Key == key })
		if file == "" {
			if holds {
				t.Fatalf("ConfigMap %s mounted at %s with key %s, without -%s.file", cm.Name, m.MountPath, key, name)
			}
			continue
		}
		if filepath.Dir(file) != m.MountPath {
			continue
		}
		for _, item := range cm.Items {
			if item.Path == filepath.Base(file) && item.Key == key {
				return cm.Name
			}
		}
		t.Fatalf("-%s.file=%s: ConfigMap %s at %s holds %+v, not key %s as %s", name, file, cm.Name, m.MountPath, cm.Items, key, filepath.Base(file))
	}
	if file != "" {
		t.Fatalf("-%s.file=%s is in no mounted ConfigMap", name, file)
	}
	return ""
}

// TestCentralFileChangeRestartsNoPod: changing the limits or the shard
// table changes its ConfigMap and nothing of the gateway's pod template
// (no checksum annotation, no argument), so an upgrade that only changes
// one of them rolls no pod; the running gateways pick the file up
// themselves (checkLimitsEnforced and checkShardsSpread show one doing it).
func TestCentralFileChangeRestartsNoPod(t *testing.T) {
	minimal := []string{"examples/central-minimal.yaml"}
	for _, tc := range []struct {
		name, key     string
		before, after map[string]any
	}{
		{"limits", "gateway.limits.clusters",
			map[string]any{"prod-eu": map[string]any{"samples_per_second": 1000}},
			map[string]any{"prod-eu": map[string]any{"samples_per_second": 2000}, "prod-us": map[string]any{"spans_per_second": 10}}},
		{"shard table", "gateway.shards.clusters",
			map[string]any{"prod-eu": 4},
			map[string]any{"prod-eu": 6, "prod-us": map[string]any{"shards": 3, "first_partition": 7}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rendered := func(v map[string]any) (*appsv1.Deployment, map[string]map[string][]byte) {
				typed, _ := decodeStrict(t, render(t, centralChart, "tributary", minimal, map[string]any{tc.key: v}))
				return gatewayDeployment(t, typed), renderedConfigMaps(typed)
			}
			before, beforeCMs := rendered(tc.before)
			after, afterCMs := rendered(tc.after)
			if reflect.DeepEqual(beforeCMs, afterCMs) {
				t.Fatalf("the ConfigMaps did not change with %s: %s", tc.key, beforeCMs)
			}
			if !reflect.DeepEqual(before.Spec.Template, after.Spec.Template) {
				t.Fatalf("the gateway's pod template changed with %s (a rollout of every gateway):\nannotations %v → %v\nargs %v → %v", tc.key,
					before.Spec.Template.Annotations, after.Spec.Template.Annotations,
					before.Spec.Template.Spec.Containers[0].Args, after.Spec.Template.Spec.Containers[0].Args)
			}
		})
	}
}

// limitsEnforcedValues are the values of the rendered-pods case that
// checkLimitsEnforced probes: an open gateway (the cluster comes from the
// series' label), cluster tiny-0 limited to a burst of 5 samples that
// refills in about an hour, every other cluster unlimited, and a short
// poll interval so that a change applies within a second.
func limitsEnforcedValues() map[string]any {
	return map[string]any{
		"gateway.auth.required": false, "gateway.auth.tokensSecret": "",
		"gateway.limits.clusters": map[string]any{"tiny-0": map[string]any{"samples_per_second": 0.001, "samples_burst": 5}},
		"gateway.extraArgs":       []any{"-limits.file.poll-interval=100ms"},
	}
}

// checkLimitsEnforced: the gateway run from the rendered pod enforces the
// rendered limits file (tiny-0 gets 2xx for its burst, then 429 with
// Retry-After naming the limit, while another cluster keeps getting 2xx),
// and picks up a change of the mounted ConfigMap, written as the kubelet
// writes it, without a restart: lifting tiny-0's rate lets it through.
func checkLimitsEnforced(t *testing.T, gw *renderedPod) {
	t.Helper()
	url := "http://" + gw.httpAddr
	if code, _, body := remoteWrite(t, url, "tiny-", 5); code/100 != 2 {
		t.Fatalf("tiny-0's first 5 samples (its burst): %d %s, want 2xx", code, body)
	}
	code, retryAfter, body := remoteWrite(t, url, "tiny-", 5)
	if code != http.StatusTooManyRequests || retryAfter == "" || !strings.Contains(body, "samples_per_second") {
		t.Fatalf("tiny-0's next 5 samples: %d (Retry-After %q) %s, want 429 with Retry-After naming samples_per_second", code, retryAfter, body)
	}
	for i := range 3 {
		if code, _, body := remoteWrite(t, url, "other-", 5); code/100 != 2 {
			t.Fatalf("request %d of cluster other-0 (no limit): %d %s, want 2xx", i, code, body)
		}
	}

	dir, ok := gw.volumes["limits"]
	if !ok {
		t.Fatalf("no limits volume among %v", gw.volumes)
	}
	writeVolume(t, dir, map[string][]byte{"limits.yaml": []byte("clusters:\n  tiny-0: {samples_per_second: -1}\n")})
	testenv.Eventually(t, 10*time.Second, func() error {
		if gw.Exited() {
			t.Fatalf("the gateway exited after the limits changed:\n%s", gw.Output())
		}
		if code, _, body := remoteWrite(t, url, "tiny-", 5); code/100 != 2 {
			return fmt.Errorf("tiny-0 after its rate was lifted: %d %s", code, body)
		}
		return nil
	})
}

// remoteWrite posts n samples of cluster <prefix>0 (the load tool's
// remote-write body: n series of one sample, stamped now) to the gateway at
// url, and returns the status, the Retry-After header and the body.
func remoteWrite(t *testing.T, url, prefix string, n int) (int, string, string) {
	t.Helper()
	bodies, err := loadgen.RemoteWriteBodies(loadgen.SeriesConfig{Series: n, SeriesPerRequest: n, Labels: loadgen.MinLabels, Clusters: 1, ClusterPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	b := bodies[0]
	b.Stamp(time.Now())
	req, err := http.NewRequest(http.MethodPost, url+"/api/v1/write", bytes.NewReader(b.Data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", b.ContentType)
	req.Header.Set("Content-Encoding", b.Encoding)
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("remote write to %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(body)
}

// TestCentralLimitsSchemaKnowsEveryLimit: values.schema.json's limits
// (definitions.clusterLimits) are exactly the keys of the gateway's
// limits file (pkg/limits.Cluster's yaml tags): a limit the gateway
// learns must not be refused at install as misspelt, and the schema must
// not accept a key the gateway refuses at start.
func TestCentralLimitsSchemaKnowsEveryLimit(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(centralChart, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Definitions struct {
			ClusterLimits struct {
				Properties           map[string]any `json:"properties"`
				AdditionalProperties *bool          `json:"additionalProperties"`
			} `json:"clusterLimits"`
		} `json:"definitions"`
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	cl := schema.Definitions.ClusterLimits
	if cl.AdditionalProperties == nil || *cl.AdditionalProperties {
		t.Errorf("definitions.clusterLimits allows keys it does not name")
	}
	var want []string
	typ := reflect.TypeFor[limits.Cluster]()
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
		want = append(want, name)
	}
	got := slices.Sorted(maps.Keys(cl.Properties))
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("schema limits %v, want the limits file's keys %v", got, want)
	}
}
