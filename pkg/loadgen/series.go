package loadgen

import (
	"fmt"
	"sort"
	"strconv"
)

// Label is one name/value pair.
type Label struct{ Name, Value string }

// Series shape: pods of a Kubernetes cluster, each exposing the same set of
// metric names, as kubelet/cAdvisor, kube-state-metrics and application
// scrapes produce them. The label names in the order they are kept when
// fewer are asked for; __name__, cluster, namespace and pod make a series
// unique, so at least those four are always there.
var labelPriority = []string{"__name__", "cluster", "namespace", "pod", "instance", "job", "container", "node", "service", "endpoint"}

// MinLabels is the fewest labels per series: enough to keep series unique.
const MinLabels = 4

var metricNames = []string{
	"container_cpu_usage_seconds_total", "container_cpu_cfs_periods_total", "container_cpu_cfs_throttled_periods_total",
	"container_memory_working_set_bytes", "container_memory_rss", "container_memory_cache", "container_memory_swap",
	"container_network_receive_bytes_total", "container_network_transmit_bytes_total",
	"container_network_receive_packets_total", "container_network_transmit_packets_total",
	"container_fs_reads_bytes_total", "container_fs_writes_bytes_total", "container_fs_usage_bytes",
	"container_spec_memory_limit_bytes", "container_spec_cpu_quota", "container_last_seen",
	"kube_pod_status_phase", "kube_pod_status_ready", "kube_pod_container_status_restarts_total",
	"kube_pod_container_resource_requests", "kube_pod_container_resource_limits", "kube_pod_info",
	"kube_pod_owner", "kube_pod_start_time", "kube_pod_container_status_running",
	"http_requests_total", "http_request_duration_seconds_sum", "http_request_duration_seconds_count",
	"http_response_size_bytes_sum", "grpc_server_handled_total", "grpc_server_started_total",
	"grpc_server_handling_seconds_sum", "go_goroutines", "go_threads", "go_memstats_alloc_bytes",
	"go_memstats_heap_inuse_bytes", "go_gc_duration_seconds_sum", "go_gc_duration_seconds_count",
	"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
	"process_start_time_seconds", "up", "scrape_duration_seconds", "scrape_samples_scraped",
	"scrape_series_added", "db_client_connections_usage", "cache_hits_total", "queue_depth",
}

var (
	namespaces = []string{"checkout", "payments", "catalog", "search", "identity", "notifications", "ingress-nginx",
		"monitoring", "kube-system", "logging", "orders", "inventory", "shipping", "recommendations", "billing",
		"analytics", "gateway", "media", "messaging", "platform"}
	apps = []string{"api", "worker", "frontend", "backend", "consumer", "scheduler", "proxy", "cache", "exporter", "controller"}
)

// clusterName is the name of cluster k of n.
func clusterName(k int) string {
	names := []string{"prod-eu-west-1", "prod-us-east-1", "prod-ap-south-1"}
	if k < len(names) {
		return names[k]
	}
	return "prod-cluster-" + strconv.Itoa(k)
}

// podOf describes pod p: its namespace, app and name. Pod names are
// deployment-like (app-<replicaset hash>-<5 chars>) and unique per p.
func podOf(p int) (namespace, app, name string) {
	namespace = namespaces[p%len(namespaces)]
	app = namespace + "-" + apps[(p/len(namespaces))%len(apps)]
	rs := strconv.FormatUint(uint64(p/7)*2654435761%(1<<32), 36)
	// 7919 is prime and coprime with 36^5: a bijection on [0, 36^5).
	suffix := strconv.FormatUint(uint64(p)*7919%60466176, 36)
	for len(suffix) < 5 {
		suffix = "0" + suffix
	}
	return namespace, app, fmt.Sprintf("%s-%s-%s", app, rs, suffix)
}

// nodeOf is the node pod p runs on: 30 pods per node.
func nodeOf(cluster string, p int) string {
	n := p / 30
	return fmt.Sprintf("ip-10-%d-%d-%d.%s.compute.internal", n/65536%256, n/256%256, n%256, cluster)
}

// seriesLabels are the sorted labels of series i (0 ≤ i < total) of cluster.
// Series i is metric i mod len(metricNames) of pod i / len(metricNames), so
// every (name, pod) pair is one series.
func seriesLabels(i int, cluster string, labels int) []Label {
	m := len(metricNames)
	p := i / m
	namespace, app, pod := podOf(p)
	node := nodeOf(cluster, p)
	all := map[string]string{
		"__name__":  metricNames[i%m],
		"cluster":   cluster,
		"namespace": namespace,
		"pod":       pod,
		"instance":  fmt.Sprintf("10.%d.%d.%d:%d", 64+p/65536%64, p/256%256, p%256, 8080+i%3),
		"job":       "kubernetes-pods",
		"container": app,
		"node":      node,
		"service":   app,
		"endpoint":  "http-metrics",
	}
	out := make([]Label, 0, labels)
	for _, name := range labelPriority {
		if len(out) == labels {
			break
		}
		out = append(out, Label{name, all[name]})
	}
	for k := len(out); k < labels; k++ {
		out = append(out, Label{fmt.Sprintf("label_%02d", k), fmt.Sprintf("value-%d-%d", k, p%17)})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// streamLabels are the sorted labels of log stream s of cluster: one
// container of one pod.
func streamLabels(s int, cluster string) []Label {
	namespace, app, pod := podOf(s)
	return []Label{
		{"app", app},
		{"cluster", cluster},
		{"container", app},
		{"job", namespace + "/" + app},
		{"namespace", namespace},
		{"node", nodeOf(cluster, s)},
		{"pod", pod},
	}
}

// lokiLabelString renders labels as Loki's stream selector: {a="b", c="d"}.
func lokiLabelString(ls []Label) string {
	b := []byte{'{'}
	for i, l := range ls {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, l.Name...)
		b = append(b, '=')
		b = strconv.AppendQuote(b, l.Value)
	}
	return string(append(b, '}'))
}
