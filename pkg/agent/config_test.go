package agent

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/pkg/agent/metrics"
)

const validConfig = `cluster: ${TEST_CLUSTER}
gateway:
  url: https://gateway.example:8080
  bearer_token_file: /var/run/secrets/token
  tls: {ca_file: /etc/ca.pem}
metrics:
  scrape_interval: 30s
  cluster_wide_jobs: [apiserver]
  wal: {dir: /var/lib/agent, max_age: 8h}
  queue: {max_shards: 8, min_shards: 8}
  scrape_configs:
    - job_name: pods
      kubernetes_sd_configs:
        - role: pod
          selectors: [{role: pod, field: "spec.nodeName=${TEST_NODE}"}]
      relabel_configs:
        - source_labels: [__meta_kubernetes_pod_name]
          regex: (.+)
          replacement: ${1}
          target_label: pod
    - job_name: apiserver
      static_configs: [{targets: ["10.0.0.1:443"]}]
logs: {positions_file: /var/lib/agent/log-positions.json}
otlp: {}
`

func TestParse(t *testing.T) {
	t.Setenv("TEST_CLUSTER", "prod-eu-1")
	t.Setenv("TEST_NODE", "node-7")
	cfg, m, err := Parse([]byte(validConfig))
	require.NoError(t, err)
	require.Equal(t, "prod-eu-1", cfg.Cluster)
	require.Equal(t, "/var/lib/agent", m.WAL.Dir)
	require.Equal(t, "8h", m.WAL.MaxAge.String())
	require.Equal(t, "2h", m.WAL.TruncateFrequency.String(), "default")

	full, err := metrics.LoadPromConfig(m.Full)
	require.NoError(t, err)
	scfgs, err := full.GetScrapeConfigs()
	require.NoError(t, err)
	require.Len(t, scfgs, 2)
	pods := scfgs[0]
	require.Equal(t, "30s", pods.ScrapeInterval.String())
	// ${1} (a capture group) is left alone, ${TEST_NODE} expanded.
	require.Equal(t, "${1}", pods.RelabelConfigs[0].Replacement)
	require.Contains(t, m.Full, "spec.nodeName=node-7")
	// The cluster-pinning rules come last in both relabel lists.
	last := pods.RelabelConfigs[len(pods.RelabelConfigs)-1]
	require.Equal(t, "cluster", last.TargetLabel)
	require.Equal(t, "prod-eu-1", last.Replacement)
	mlast := pods.MetricRelabelConfigs[len(pods.MetricRelabelConfigs)-1]
	require.Equal(t, "cluster", mlast.TargetLabel)
	require.Equal(t, "prod-eu-1", mlast.Replacement)

	rw := full.RemoteWriteConfigs[0]
	require.Equal(t, "https://gateway.example:8080/api/v1/write", rw.URL.String())
	require.True(t, rw.QueueConfig.RetryOnRateLimit)
	require.Equal(t, 8, rw.QueueConfig.MaxShards, "the file's queue wins over the defaults")
	require.Equal(t, "/var/run/secrets/token", rw.HTTPClientConfig.Authorization.CredentialsFile)
	require.Equal(t, "/etc/ca.pem", rw.HTTPClientConfig.TLSConfig.CAFile)
	require.False(t, rw.HTTPClientConfig.TLSConfig.InsecureSkipVerify)
	require.Equal(t, "prod-eu-1", full.GlobalConfig.ExternalLabels.Get("cluster"))

	// NodeOnly leaves the cluster-wide job out.
	node, err := metrics.LoadPromConfig(m.NodeOnly)
	require.NoError(t, err)
	nscfgs, err := node.GetScrapeConfigs()
	require.NoError(t, err)
	require.Len(t, nscfgs, 1)
	require.Equal(t, "pods", nscfgs[0].JobName)
}

func TestParseRefuses(t *testing.T) {
	t.Setenv("TEST_CLUSTER", "c1")
	base := "cluster: c1\ngateway: {url: http://gw:8080}\n"
	for _, tc := range []struct {
		name, config, want string
	}{
		{"unknown top-level key", base + "metricz: {}\n", "line 3: field metricz not found"},
		{"unknown gateway key", "cluster: c1\ngateway:\n  url: http://gw\n  token: x\n", "line 4: field token not found"},
		{"unset variable", "cluster: ${NOT_SET_ANYWHERE}\n", "line 1: environment variable NOT_SET_ANYWHERE is not set"},
		{"no cluster", "gateway: {url: http://gw}\n", "cluster: required"},
		{"no gateway", "cluster: c1\n", "gateway: url: required"},
		{"bad scheme", "cluster: c1\ngateway: {url: ftp://gw}\n", "scheme must be http or https"},
		{"bad scrape config", base + "metrics:\n  scrape_configs:\n    - job_name: x\n      scrape_intervl: 5s\n", "line 5: metrics.scrape_configs[0]: job \"x\": yaml: unmarshal errors"},
		{"scrape config key", base + "metrics:\n  scrape_configs:\n    - job_name: x\n      static_configs: [{targets: [\"a:1\"]}]\n    - job_name: x\n", "line 7: metrics.scrape_configs[1]: job_name \"x\" already used at line 5"},
		{"cluster-wide job missing", base + "metrics:\n  cluster_wide_jobs: [nope]\n", "no scrape config has job_name \"nope\""},
		{"bad wal", base + "metrics:\n  wal: {compression: lz4}\n", "compression \"lz4\""},
		{"bad queue", base + "metrics:\n  queue: {max_shards: -1}\n", "line 4: metrics.queue"},
		{"events without kubernetes", base + "events: {}\n", "events: needs the kubernetes section"},
		{"events without election", base + "kubernetes: {}\nevents: {}\n", "required when metrics.cluster_wide_jobs or events is set"},
		{"events bad batch", base + "kubernetes: {leader_election: {namespace: a, identity: b}}\nevents: {batch_size: 100, max_pending: 10}\n", "max_pending 10 is below batch_size 100"},
		{"events unknown key", base + "kubernetes: {leader_election: {namespace: a, identity: b}}\nevents: {batchsize: 1}\n", "field batchsize not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tc.config))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestExpandEnvLiteral(t *testing.T) {
	out, err := expandEnv([]byte("a: $${HOME} b: $1 c: ${1}"))
	require.NoError(t, err)
	require.Equal(t, "a: ${HOME} b: $1 c: ${1}", string(out))
	require.False(t, strings.Contains(string(out), "$$"))
}

func TestParseKubernetes(t *testing.T) {
	t.Setenv("TEST_NODE", "node-7")
	cfg, _, err := Parse([]byte(`cluster: c1
gateway: {url: http://gw:8080}
kubernetes:
  node_name: ${TEST_NODE}
  leader_election: {namespace: kube-system, identity: agent-1}
metrics:
  cluster_wide_jobs: [apiserver]
  scrape_configs:
    - job_name: apiserver
      static_configs: [{targets: ["10.0.0.1:443"]}]
`))
	require.NoError(t, err)
	require.Equal(t, "node-7", cfg.Kubernetes.NodeName)
	require.Equal(t, "tributary-agent", cfg.Kubernetes.LeaderElection.LeaseName, "default")
	require.True(t, cfg.needsElection())

	_, _, err = Parse([]byte(`cluster: c1
gateway: {url: http://gw:8080}
kubernetes: {}
metrics:
  cluster_wide_jobs: [apiserver]
  scrape_configs:
    - job_name: apiserver
      static_configs: [{targets: ["10.0.0.1:443"]}]
`))
	require.ErrorContains(t, err, "kubernetes.leader_election: namespace and identity")
}
