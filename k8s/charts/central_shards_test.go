package charts

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/record"
	"github.com/tributary-io/tributary/pkg/shard"
)

// TestCentralShardsFile: gateway.shards.clusters becomes the shard table
// that the gateway's own parser reads back line for line, in a ConfigMap
// mounted read-only as a directory with -shards.file pointing into it;
// existingConfigMap mounts the user's ConfigMap instead; with neither, no
// file, no flag and no volume. Next to the limits file, each flag reads
// its own ConfigMap. -shards.hash is rendered only when not the gateway's
// default. The values file case takes the path of `helm install -f` (Helm
// reads the numbers as float64) with every form of line and a cluster
// named like a number.
func TestCentralShardsFile(t *testing.T) {
	minimal := "examples/central-minimal.yaml"
	limitsFile := "testdata/gateway-limits.yaml"
	for _, tc := range []struct {
		name  string
		files []string
		set   map[string]any
		// configMap is the ConfigMap -shards.file must read ("" none);
		// want, when set, the table the chart renders into it.
		configMap string
		want      string
		// limits is the ConfigMap -limits.file must read ("" none).
		limits string
		hash   string // -shards.hash ("" not rendered)
	}{
		{name: "from a values file", files: []string{minimal, "testdata/gateway-shards.yaml"}, configMap: "rel-tributary-gateway-shards",
			want: "clusters:\n  prod-eu: 4\n  prod-us: {shards: 3, first_partition: 7}\n  batch-jobs: {first_partition: 0}\n  \"007\": 2\n"},
		{name: "with limits and fnv1a", files: []string{minimal, limitsFile, "testdata/gateway-shards.yaml"}, set: map[string]any{"gateway.shards.hash": "fnv1a"},
			configMap: "rel-tributary-gateway-shards", limits: "rel-tributary-gateway-limits", hash: "fnv1a",
			want: "clusters:\n  prod-eu: 4\n  prod-us: {shards: 3, first_partition: 7}\n  batch-jobs: {first_partition: 0}\n  \"007\": 2\n"},
		{name: "set", files: []string{minimal}, set: map[string]any{"gateway.shards.clusters": map[string]any{"hot": 2}},
			configMap: "rel-tributary-gateway-shards", want: "clusters:\n  hot: 2\n"},
		{name: "existing ConfigMap", files: []string{minimal}, set: map[string]any{"gateway.shards.existingConfigMap": "team-shards"}, configMap: "team-shards"},
		{name: "existing ConfigMap and limits", files: []string{minimal, limitsFile}, set: map[string]any{"gateway.shards.existingConfigMap": "team-shards"},
			configMap: "team-shards", limits: "rel-tributary-gateway-limits"},
		{name: "none, fnv1a", files: []string{minimal}, set: map[string]any{"gateway.shards.hash": "fnv1a"}, hash: "fnv1a"},
		{name: "none", files: []string{minimal}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typed, _ := decodeStrict(t, render(t, centralChart, "tributary", tc.files, tc.set))
			gw := gatewayDeployment(t, typed)
			checkSecretMounts(t, gw)
			args := gw.Spec.Template.Spec.Containers[0].Args
			if got := flagValue(args, "shards.hash"); got != tc.hash {
				t.Fatalf("-shards.hash=%q, want %q (rendered only when not the default)", got, tc.hash)
			}
			if got := fileConfigMap(t, gw, "limits", flagValue(args, "limits.file")); got != tc.limits {
				t.Fatalf("-limits.file reads ConfigMap %q, want %q", got, tc.limits)
			}
			file := flagValue(args, "shards.file")
			if mounted := fileConfigMap(t, gw, "shards", file); mounted != tc.configMap {
				t.Fatalf("-shards.file=%q from ConfigMap %q, want ConfigMap %q", file, mounted, tc.configMap)
			}
			cms := renderedConfigMaps(typed)
			if tc.want == "" {
				if _, ok := cms["rel-tributary-gateway-shards"]; ok {
					t.Fatalf("ConfigMaps %v rendered, want no shard table of the chart's", keys(cms))
				}
				return
			}
			data, ok := cms[tc.configMap][filepath.Base(file)]
			if !ok {
				t.Fatalf("ConfigMaps %v rendered, no %s with key %s", keys(cms), tc.configMap, filepath.Base(file))
			}
			got, err := shard.Parse(data)
			if err != nil {
				t.Fatalf("the gateway refuses the rendered shard table: %v\n%s", err, data)
			}
			want, err := shard.Parse([]byte(tc.want))
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(want) || got.YAML() != want.YAML() {
				t.Fatalf("rendered shard table reads as\n%s\nwant\n%s\nrendered:\n%s", got.YAML(), want.YAML(), data)
			}
		})
	}
}

// TestCentralShardsFitTopics: where the chart knows the partition counts
// of the gateway's topics (kafka.createTopics, with partitionsPerTopic
// overriding, or Strimzi's KafkaTopics), a shard table line whose k
// exceeds one of them or whose first_partition is not one of them is
// refused at install, naming the line, the topic and the value that sets
// its count, since the gateway refuses it at start; a line that just fits
// renders, and so does any k when the chart knows no partition count (an
// existing Kafka: the gateway's own check at start decides).
func TestCentralShardsFitTopics(t *testing.T) {
	minimal := []string{"examples/central-minimal.yaml"}
	strimzi := func(set map[string]any) map[string]any {
		return withValues(map[string]any{"kafka.strimzi.enabled": true, "gateway.auth.tokensSecret": "t"}, set)
	}
	create := map[string]any{"enabled": true, "partitions": 6, "partitionsPerTopic": map[string]any{"tributary.spans": 4, "tributary.dlq": 1}}
	for _, tc := range []struct {
		name  string
		files []string
		set   map[string]any
		want  []string // nil renders; else what the error names
	}{
		{"created topics fit", minimal, map[string]any{"kafka.createTopics": create, "gateway.shards.clusters": map[string]any{"hot": 4, "pinned": map[string]any{"first_partition": 3}}}, nil},
		{"k above the created partitions", minimal, map[string]any{"kafka.createTopics": map[string]any{"enabled": true, "partitions": 6}, "gateway.shards.clusters": map[string]any{"hot": 7}},
			[]string{"gateway.shards.clusters.hot", "over 7 partitions", "tributary.logs has 6", "kafka.createTopics.partitions)"}},
		{"k above one topic's own partitions", minimal, map[string]any{"kafka.createTopics": create, "gateway.shards.clusters": map[string]any{"hot": map[string]any{"shards": 5}}},
			[]string{"gateway.shards.clusters.hot", "over 5 partitions", "tributary.spans has 4", "kafka.createTopics.partitionsPerTopic.tributary.spans"}},
		{"first partition beyond one topic's", minimal, map[string]any{"kafka.createTopics": create, "gateway.shards.clusters": map[string]any{"pinned": map[string]any{"first_partition": 4}}},
			[]string{"gateway.shards.clusters.pinned.first_partition is 4", "tributary.spans has partitions 0 to 3"}},
		{"Strimzi topics fit", nil, strimzi(map[string]any{"gateway.shards.clusters": map[string]any{"hot": 16, "pinned": map[string]any{"shards": 2, "first_partition": 15}}}), nil},
		{"k above a KafkaTopic's partitions", nil, strimzi(map[string]any{"kafka.strimzi.topics.partitions.metrics": 8, "gateway.shards.clusters": map[string]any{"hot": 9}}),
			[]string{"gateway.shards.clusters.hot", "tributary.metrics has 8", "kafka.strimzi.topics.partitions.metrics"}},
		{"first partition beyond a KafkaTopic's", nil, strimzi(map[string]any{"gateway.shards.clusters": map[string]any{"pinned": map[string]any{"first_partition": 16}}}),
			[]string{"pinned.first_partition is 16", "has partitions 0 to 15", "kafka.strimzi.topics.partitions."}},
		{"partitions unknown to the chart", minimal, map[string]any{"gateway.shards.clusters": map[string]any{"hot": 1000, "pinned": map[string]any{"first_partition": 999}}}, nil},
		{"topic creation off", minimal, map[string]any{"kafka.createTopics": withValues(create, map[string]any{"enabled": false}), "gateway.shards.clusters": map[string]any{"hot": 7}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderErr(t, centralChart, "tributary", tc.files, tc.set)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != nil && err == nil:
				t.Fatalf("rendered, want a refusal naming %q", tc.want)
			case tc.want != nil:
				for _, w := range append(tc.want, "would fail to start") {
					if !strings.Contains(err.Error(), w) {
						t.Fatalf("error %q, want it to name %q", err, w)
					}
				}
			}
		})
	}
}

// shardsSpreadPartitions is the partition count of the broker's topics in
// the rendered-pods case that checkShardsSpread probes.
const shardsSpreadPartitions = 4

// shardsSpreadValues are the values of that case: an open gateway (the
// cluster comes from the series' label), hot-0 spread over 3 partitions
// from its base one, pinned-0 over 2 from partition 1, fnv1a base
// partitions, and a short poll interval so that a change applies within a
// second.
func shardsSpreadValues() map[string]any {
	return map[string]any{
		"gateway.auth.required": false, "gateway.auth.tokensSecret": "",
		"gateway.shards.clusters": map[string]any{"hot-0": 3, "pinned-0": map[string]any{"shards": 2, "first_partition": 1}},
		"gateway.shards.hash":     "fnv1a",
		"gateway.extraArgs":       []any{"-shards.file.poll-interval=100ms"},
	}
}

// checkShardsSpread: the gateway run from the rendered pod spreads the
// clusters of the rendered shard table: hot-0's records land on exactly
// its 3 partitions from its fnv1a base partition (xxhash's would be
// others), pinned-0's on partitions 1 and 2, an unlisted cluster's on its
// base partition alone, every series once. A change of the mounted
// ConfigMap, written as the kubelet writes it, spreads another cluster
// without a restart.
func checkShardsSpread(t *testing.T, gw *renderedPod) {
	t.Helper()
	const parts = shardsSpreadPartitions
	url := "http://" + gw.httpAddr
	spread := func(first int32, k int) []int32 {
		var ps []int32
		for s := range int32(k) {
			ps = append(ps, (first+s)%parts)
		}
		slices.Sort(ps)
		return ps
	}
	fnv := func(cluster string) int32 { return shard.HashFNV1a.Base(cluster, parts) }
	sent := map[string]int{"hot-0": 60, "pinned-0": 40, "cold-0": 20}
	for cluster, n := range sent {
		if code, _, body := remoteWrite(t, url, strings.TrimSuffix(cluster, "0"), n); code/100 != 2 {
			t.Fatalf("%d series of %s: %d %s, want 2xx", n, cluster, code, body)
		}
	}
	got := clusterPartitions(t, gw.kafkaAddr)
	for cluster, want := range map[string][]int32{
		"hot-0":    spread(fnv("hot-0"), 3),
		"pinned-0": spread(1, 2),
		"cold-0":   {fnv("cold-0")},
	} {
		if !slices.Equal(got[cluster].partitions, want) {
			t.Errorf("%s's records on partitions %v, want %v", cluster, got[cluster].partitions, want)
		}
		if got[cluster].series != sent[cluster] {
			t.Errorf("%s: %d series in its records, want the %d sent", cluster, got[cluster].series, sent[cluster])
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	dir, ok := gw.volumes["shards"]
	if !ok {
		t.Fatalf("no shards volume among %v", gw.volumes)
	}
	writeVolume(t, dir, map[string][]byte{"shards.yaml": []byte("clusters:\n  hot-0: 3\n  pinned-0: {shards: 2, first_partition: 1}\n  warm-0: 2\n")})
	want := spread(fnv("warm-0"), 2)
	testenv.Eventually(t, 10*time.Second, func() error {
		if gw.Exited() {
			t.Fatalf("the gateway exited after the shard table changed:\n%s", gw.Output())
		}
		if code, _, body := remoteWrite(t, url, "warm-", 40); code/100 != 2 {
			t.Fatalf("warm-0: %d %s, want 2xx", code, body)
		}
		if got := clusterPartitions(t, gw.kafkaAddr)["warm-0"].partitions; !slices.Equal(got, want) {
			return fmt.Errorf("warm-0's records on partitions %v, want %v once the new table applies", got, want)
		}
		return nil
	})
}

// written is what the metrics topic holds of one cluster: the partitions
// its records are on, sorted, and the series they carry.
type written struct {
	partitions []int32
	series     int
}

// clusterPartitions reads the metrics topic of the broker at addr and
// returns, by the cluster of each record's envelope (which must be its
// key), what it holds of that cluster.
func clusterPartitions(t *testing.T, addr string) map[string]written {
	t.Helper()
	out := map[string]written{}
	for _, m := range testenv.ReadTopic(t, addr, "tributary.metrics") {
		env, err := record.Parse(m.Headers)
		if err != nil {
			t.Fatalf("record at %d/%d: %v", m.Partition, m.Offset, err)
		}
		if string(m.Key) != env.GetCluster() {
			t.Fatalf("record at %d/%d keyed %q, its cluster %q", m.Partition, m.Offset, m.Key, env.GetCluster())
		}
		w := out[env.GetCluster()]
		if !slices.Contains(w.partitions, m.Partition) {
			w.partitions = append(w.partitions, m.Partition)
			slices.Sort(w.partitions)
		}
		w.series += int(env.GetItems())
		out[env.GetCluster()] = w
	}
	return out
}
