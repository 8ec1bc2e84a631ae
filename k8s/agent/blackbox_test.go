package agent_test

import (
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/tributary-io/tributary/pkg/agent"
)

// The documented blackbox job (examples/blackbox.yaml) is accepted by the
// agent's loader as a cluster-wide job, and Prometheus's target building
// turns each listed URL into one scrape of the exporter's /probe with the
// URL as the target parameter and as the instance label: the exporter's
// multi-target pattern. (grafana's TestSyntheticChecks runs the same job
// against the real exporter.)
func TestBlackboxExample(t *testing.T) {
	raw, err := os.ReadFile("examples/blackbox.yaml")
	require.NoError(t, err)
	cfg, _, err := agent.Parse([]byte("cluster: c1\ngateway: {url: \"http://gw:8080\"}\n" +
		"kubernetes: {leader_election: {namespace: monitoring, identity: agent-0}}\n" + string(raw)))
	require.NoError(t, err, "the agent refuses examples/blackbox.yaml")
	require.Equal(t, []string{"blackbox"}, cfg.Metrics.ClusterWideJobs)

	var ex struct {
		Metrics struct {
			ScrapeConfigs []any `yaml:"scrape_configs"`
		} `yaml:"metrics"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &ex))
	scrapeYAML, err := yaml.Marshal(map[string]any{"scrape_configs": ex.Metrics.ScrapeConfigs})
	require.NoError(t, err)
	pcfg, err := config.Load(string(scrapeYAML), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	scfgs, err := pcfg.GetScrapeConfigs()
	require.NoError(t, err)
	require.Len(t, scfgs, 1)
	sc := scfgs[0]
	require.Less(t, sc.ScrapeTimeout, sc.ScrapeInterval)

	g := &targetgroup.Group{Source: "example", Targets: []model.LabelSet{
		{model.AddressLabel: "https://shop.example.com/healthz"},
		{model.AddressLabel: "http://cart.shop.svc:8080/healthz"},
	}}
	targets, errs := scrape.TargetsFromGroup(g, sc, nil, labels.NewBuilder(labels.EmptyLabels()))
	require.Empty(t, errs)
	require.Len(t, targets, 2)
	var got []string
	for _, tg := range targets {
		ls := tg.Labels(labels.NewBuilder(labels.EmptyLabels()))
		got = append(got, tg.URL().String()+" instance="+ls.Get("instance")+" job="+ls.Get("job"))
	}
	require.Equal(t, []string{
		"http://blackbox-exporter.monitoring:9115/probe?module=http_2xx&target=https%3A%2F%2Fshop.example.com%2Fhealthz instance=https://shop.example.com/healthz job=blackbox",
		"http://blackbox-exporter.monitoring:9115/probe?module=http_2xx&target=http%3A%2F%2Fcart.shop.svc%3A8080%2Fhealthz instance=http://cart.shop.svc:8080/healthz job=blackbox",
	}, got)
	require.False(t, strings.Contains(string(raw), "${"), "the example names no environment variable")
}
