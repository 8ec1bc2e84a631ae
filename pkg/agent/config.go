// Package agent is the node agent: its configuration file, its HTTP server
// (metrics, health, reload, status page) and the run group that holds the
// metrics pipeline (pkg/agent/metrics) and the components (logs, events,
// spans), with what they share: the Kubernetes client, the leader
// election and the node's pod informer.
package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/tributary-io/tributary/pkg/agent/events"
	"github.com/tributary-io/tributary/pkg/agent/logs"
	"github.com/tributary-io/tributary/pkg/agent/metrics"
	"github.com/tributary-io/tributary/pkg/agent/otlp"
	"github.com/tributary-io/tributary/pkg/k8s"
)

// Config is the agent's configuration file. Unknown keys are an error;
// ${NAME} is replaced by the environment variable NAME before parsing.
type Config struct {
	// Cluster is the value of the cluster label on everything the agent
	// sends. Required.
	Cluster string `yaml:"cluster"`
	// Gateway is where the agent sends.
	Gateway metrics.GatewayConfig `yaml:"gateway"`
	// Metrics is the scrape side.
	Metrics MetricsFile `yaml:"metrics"`
	// Kubernetes, when present, connects the agent to the API server; with
	// metrics.cluster_wide_jobs set, the agents of a cluster elect the one
	// that scrapes those jobs on a Lease. Absent: no Kubernetes, this agent
	// scrapes every job. Changes need a restart.
	Kubernetes *KubernetesConfig `yaml:"kubernetes"`
	// Events, when present (even empty), ships the cluster's Kubernetes
	// events from the leader of the agents' Lease; it needs the
	// kubernetes section with leader_election.
	Events *events.Config `yaml:"events"`
	// Logs, when present, tails container logs (and configured files)
	// into the gateway (pkg/agent/logs).
	Logs *logs.Config `yaml:"logs"`
	// OTLP, when present (even empty), receives OTLP on the node and
	// relays it to the gateway with the sending pod's attributes
	// (pkg/agent/otlp); the pod attributes need kubernetes.node_name.
	OTLP *otlp.Config `yaml:"otlp"`
}

// KubernetesConfig is the kubernetes section.
type KubernetesConfig struct {
	// Kubeconfig: empty means in-cluster (the pod's service account).
	Kubeconfig string `yaml:"kubeconfig"`
	// NodeName is the node this agent runs on (in a DaemonSet:
	// ${NODE_NAME} from the downward API spec.nodeName). When set, the
	// agent keeps a cache of the node's pods (one informer limited to the
	// node) for the components that label data with pod metadata.
	NodeName       string               `yaml:"node_name"`
	LeaderElection LeaderElectionConfig `yaml:"leader_election"`
}

// LeaderElectionConfig names the coordination.k8s.io Lease the agents of a
// cluster campaign for. Durations left out take pkg/k8s's defaults
// (Kubernetes' own controllers': 15s, 10s, 2s).
type LeaderElectionConfig struct {
	Namespace string `yaml:"namespace"`
	// LeaseName defaults to tributary-agent.
	LeaseName string `yaml:"lease_name"`
	// Identity tells the agents apart, e.g. ${POD_NAME}.
	Identity      string         `yaml:"identity"`
	LeaseDuration model.Duration `yaml:"lease_duration"`
	RenewDeadline model.Duration `yaml:"renew_deadline"`
	RetryPeriod   model.Duration `yaml:"retry_period"`
}

// ElectionConfig is the pkg/k8s form.
func (c *LeaderElectionConfig) ElectionConfig() k8s.ElectionConfig {
	return k8s.ElectionConfig{
		Namespace: c.Namespace, LeaseName: c.LeaseName, Identity: c.Identity,
		LeaseDuration: time.Duration(c.LeaseDuration), RenewDeadline: time.Duration(c.RenewDeadline),
		RetryPeriod: time.Duration(c.RetryPeriod),
	}
}

// MetricsFile is the metrics section as written in the file: the agent's
// own keys plus scrape_configs in Prometheus's own format.
type MetricsFile struct {
	// ScrapeInterval and ScrapeTimeout are Prometheus's global defaults for
	// every scrape config that does not set its own.
	ScrapeInterval model.Duration `yaml:"scrape_interval"`
	ScrapeTimeout  model.Duration `yaml:"scrape_timeout"`
	// ClusterWideJobs names the jobs scraped by one agent per cluster (the
	// leader); every other job is scraped by every agent.
	ClusterWideJobs []string `yaml:"cluster_wide_jobs"`
	// WAL is the write-ahead log on disk.
	WAL metrics.WALConfig `yaml:"wal"`
	// Queue is Prometheus's remote-write queue_config, as is; the agent's
	// defaults (metrics.DefaultQueue) fill what it leaves out.
	Queue yaml.Node `yaml:"queue"`
	// ScrapeConfigs is a list of Prometheus scrape configs (pasted from a
	// prometheus.yml), parsed by Prometheus's own config package.
	ScrapeConfigs []yaml.Node `yaml:"scrape_configs"`
}

// envRef is ${NAME}. $1 and ${1} (relabel capture groups) are left alone;
// $${NAME} is a literal ${NAME}.
var envRef = regexp.MustCompile(`\$?\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces ${NAME} by the environment variable NAME. An unset
// variable is an error naming it and its line: an empty cluster name or
// node name would silently send data under the wrong identity.
func expandEnv(data []byte) ([]byte, error) {
	var errs []error
	out := envRef.ReplaceAllFunc(data, func(m []byte) []byte {
		if bytes.HasPrefix(m, []byte("$$")) {
			return m[1:]
		}
		name := string(m[2 : len(m)-1])
		v, ok := os.LookupEnv(name)
		if !ok {
			line := 1 + bytes.Count(data[:bytes.Index(data, m)], []byte("\n"))
			errs = append(errs, fmt.Errorf("line %d: environment variable %s is not set (write $${%s} for a literal)", line, name, name))
		}
		return []byte(v)
	})
	return out, errors.Join(errs...)
}

// LoadFile reads, expands and validates the configuration file and builds
// the metrics pipeline's configuration from it.
func LoadFile(path string) (*Config, *metrics.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read config: %w", err)
	}
	cfg, mcfg, err := Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return cfg, mcfg, nil
}

// Parse is LoadFile on the file's contents.
func Parse(data []byte) (*Config, *metrics.Config, error) {
	data, err := expandEnv(data)
	if err != nil {
		return nil, nil, err
	}
	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	mcfg, err := cfg.build()
	if err != nil {
		return nil, nil, err
	}
	return cfg, mcfg, nil
}

// clusterName is what Prometheus accepts as a label value we write
// ourselves: printable, no quotes to escape in logs.
var clusterName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func (c *Config) build() (*metrics.Config, error) {
	if c.Cluster == "" {
		return nil, errors.New("cluster: required (the value of the cluster label on everything the agent sends)")
	}
	if !clusterName.MatchString(c.Cluster) {
		return nil, fmt.Errorf("cluster %q: want letters, digits, '.', '_' or '-', at most 63 characters", c.Cluster)
	}
	if err := c.Gateway.Validate(); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	m := &c.Metrics
	if m.ScrapeInterval == 0 {
		// Prometheus's own default is 1m; 15s is what the dashboards and
		// every Kubernetes distribution's Prometheus use.
		m.ScrapeInterval = model.Duration(15 * time.Second)
	}
	if m.ScrapeTimeout == 0 {
		m.ScrapeTimeout = min(m.ScrapeInterval, model.Duration(10*time.Second))
	}
	if c.Events != nil {
		if c.Kubernetes == nil {
			return nil, errors.New("events: needs the kubernetes section (with leader_election: one agent per cluster ships the events)")
		}
		if err := c.Events.Validate(); err != nil {
			return nil, fmt.Errorf("events: %w", err)
		}
	}
	if c.Logs != nil {
		if err := c.Logs.Validate(); err != nil {
			return nil, fmt.Errorf("logs: %w", err)
		}
	}
	if c.OTLP != nil {
		if err := c.OTLP.Validate(); err != nil {
			return nil, fmt.Errorf("otlp: %w", err)
		}
	}
	if k := c.Kubernetes; k != nil && c.needsElection() {
		le := &k.LeaderElection
		if le.LeaseName == "" {
			le.LeaseName = "tributary-agent"
		}
		if le.Namespace == "" || le.Identity == "" {
			return nil, errors.New("kubernetes.leader_election: namespace and identity (e.g. ${POD_NAME}) are required when metrics.cluster_wide_jobs or events is set")
		}
	}
	if err := m.WAL.Validate(); err != nil {
		return nil, fmt.Errorf("metrics.wal: %w", err)
	}
	jobs := map[string]int{}
	for i := range m.ScrapeConfigs {
		n := &m.ScrapeConfigs[i]
		name, err := checkScrapeConfig(n, c.Cluster, m, c.Gateway)
		if err != nil {
			return nil, fmt.Errorf("line %d: metrics.scrape_configs[%d]: %w", n.Line, i, err)
		}
		if prev, ok := jobs[name]; ok {
			return nil, fmt.Errorf("line %d: metrics.scrape_configs[%d]: job_name %q already used at line %d", n.Line, i, name, prev)
		}
		jobs[name] = n.Line
	}
	for _, j := range m.ClusterWideJobs {
		if _, ok := jobs[j]; !ok {
			return nil, fmt.Errorf("metrics.cluster_wide_jobs: no scrape config has job_name %q", j)
		}
	}
	if m.Queue.Kind != 0 {
		if _, err := promConfig(c.Cluster, m, nil, c.Gateway, &m.Queue); err != nil {
			return nil, fmt.Errorf("line %d: metrics.queue: %w", m.Queue.Line, err)
		}
	}
	var node, all []*yaml.Node
	for i := range m.ScrapeConfigs {
		n := &m.ScrapeConfigs[i]
		all = append(all, n)
		if !slices.Contains(m.ClusterWideJobs, jobName(n)) {
			node = append(node, n)
		}
	}
	var queue *yaml.Node
	if m.Queue.Kind != 0 {
		queue = &m.Queue
	}
	full, err := promConfig(c.Cluster, m, all, c.Gateway, queue)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	nodeOnly, err := promConfig(c.Cluster, m, node, c.Gateway, queue)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &metrics.Config{
		Cluster:         c.Cluster,
		WAL:             m.WAL,
		Gateway:         c.Gateway,
		Full:            full,
		NodeOnly:        nodeOnly,
		ClusterWideJobs: m.ClusterWideJobs,
	}, nil
}

// needsElection reports whether any work is done by one agent per cluster:
// cluster-wide scrape jobs or the events watcher.
func (c *Config) needsElection() bool {
	return len(c.Metrics.ClusterWideJobs) > 0 || c.Events != nil
}

func jobName(n *yaml.Node) string {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "job_name" {
			return n.Content[i+1].Value
		}
	}
	return ""
}

// checkScrapeConfig parses one scrape config alone with Prometheus's config
// package, so that an error names the scrape config's own line, and adds
// the rules that pin the cluster label.
func checkScrapeConfig(n *yaml.Node, cluster string, m *MetricsFile, gw metrics.GatewayConfig) (string, error) {
	if n.Kind != yaml.MappingNode {
		return "", errors.New("want a mapping (a Prometheus scrape config)")
	}
	name := jobName(n)
	if name == "" {
		return "", errors.New("job_name is required")
	}
	if err := pinCluster(n, cluster); err != nil {
		return "", err
	}
	if _, err := promConfig(cluster, m, []*yaml.Node{n}, gw, nil); err != nil {
		return "", fmt.Errorf("job %q: %w", name, err)
	}
	return name, nil
}

// pinCluster appends, to the target relabelling and to the metric
// relabelling of a scrape config, a rule that sets cluster to the agent's
// cluster. In remote write a series' own label wins over an external label,
// so without these a target exposing cluster="x" (or a static_configs label,
// or honor_labels) would send under another cluster's name. Appended last,
// after the user's rules, so nothing the user writes can undo them.
func pinCluster(n *yaml.Node, cluster string) error {
	for _, key := range []string{"relabel_configs", "metric_relabel_configs"} {
		rule := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
			{Kind: yaml.ScalarNode, Value: "action"}, {Kind: yaml.ScalarNode, Value: "replace"},
			{Kind: yaml.ScalarNode, Value: "target_label"}, {Kind: yaml.ScalarNode, Value: "cluster"},
			{Kind: yaml.ScalarNode, Value: "replacement"}, {Kind: yaml.ScalarNode, Value: cluster, Style: yaml.DoubleQuotedStyle},
		}}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value != key {
				continue
			}
			list := n.Content[i+1]
			if list.Kind == yaml.ScalarNode && (list.Tag == "!!null" || list.Value == "") {
				*list = yaml.Node{Kind: yaml.SequenceNode}
			}
			if list.Kind != yaml.SequenceNode {
				return fmt.Errorf("line %d: %s: want a list", list.Line, key)
			}
			list.Content = append(list.Content, rule)
			found = true
		}
		if !found {
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key},
				&yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{rule}})
		}
	}
	return nil
}

// promConfig writes the Prometheus configuration the agent runs: global
// defaults with the cluster as external label, the scrape configs, and one
// remote_write to the gateway.
func promConfig(cluster string, m *MetricsFile, scrape []*yaml.Node, gw metrics.GatewayConfig, queue *yaml.Node) (string, error) {
	rw, err := gw.RemoteWrite(queue)
	if err != nil {
		return "", err
	}
	doc := map[string]any{
		"global": map[string]any{
			"scrape_interval": m.ScrapeInterval.String(),
			"scrape_timeout":  m.ScrapeTimeout.String(),
			"external_labels": map[string]string{"cluster": cluster},
		},
		"remote_write": []any{rw},
	}
	if len(scrape) > 0 {
		doc["scrape_configs"] = scrape
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return "", err
	}
	if err := metrics.CheckPromConfig(string(out)); err != nil {
		return "", err
	}
	return string(out), nil
}
