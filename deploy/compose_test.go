package deploy

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/agent"
)

func loadCompose(t *testing.T, root string) *types.Project {
	t.Helper()
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("tributary", true) })
	require.NoError(t, err, "compose-go refuses docker-compose.yml")
	return p
}

// flagValue is the value of -name=value in a service's command.
func flagValue(s types.ServiceConfig, name string) string {
	for _, a := range s.Command {
		if v, ok := strings.CutPrefix(a, "-"+name+"="); ok {
			return v
		}
	}
	return ""
}

// checkAddress checks that address (a URL or host:port) names a service
// of the project on the port that service serves (ports, by service name).
func checkAddress(t *testing.T, p *types.Project, from, address string, ports map[string]string) {
	t.Helper()
	hostport := address
	if u, err := url.Parse(address); err == nil && u.Host != "" {
		hostport = u.Host
	}
	host, port, err := net.SplitHostPort(hostport)
	require.NoError(t, err, "%s: address %q", from, address)
	_, err = p.GetService(host)
	require.NoError(t, err, "%s: address %q names no service", from, address)
	require.Equal(t, ports[host], port, "%s: address %q: service %s serves on %s", from, address, host, ports[host])
}

func TestCompose(t *testing.T) {
	root := testenv.RepoRoot(t)
	p := loadCompose(t, root)

	// The ports each service serves, read from its own configuration.
	ports := map[string]string{
		"prometheus":    "",
		"loki":          "",
		"elasticsearch": "9200", // the image's default http.port
		"jaeger":        "16686",
	}
	prom, err := p.GetService("prometheus")
	require.NoError(t, err)
	for _, a := range prom.Command {
		if v, ok := strings.CutPrefix(a, "--web.listen-address="); ok {
			_, ports["prometheus"], _ = net.SplitHostPort(v)
		}
	}
	require.True(t, slices.Contains(prom.Command, "--web.enable-remote-write-receiver"), "prometheus: the ingesters remote-write to it")
	lokiCfg := readYAMLMap(t, filepath.Join(root, "deploy/local/loki.yaml"))
	ports["loki"] = fmt.Sprint(lokiCfg["server"].(map[string]any)["http_listen_port"])

	kafka, err := p.GetService("kafka")
	require.NoError(t, err)
	ports["kafka"] = kafkaAdvertisedPort(t, kafka)

	t.Run("images pinned", func(t *testing.T) {
		for _, s := range p.Services {
			if s.Build != nil {
				continue // built from the Dockerfile, whose bases are checked
			}
			require.NotEmpty(t, s.Image, "service %s has no image", s.Name)
			if strings.HasPrefix(s.Image, "tributary/") {
				require.True(t, builtImage(p, s.Image), "service %s: image %s is built by no service", s.Name, s.Image)
				continue
			}
			require.True(t, imagePinned(s.Image), "service %s: image %q is not pinned by version", s.Name, s.Image)
		}
	})

	t.Run("mounted files exist", func(t *testing.T) {
		n := 0
		for _, s := range p.Services {
			for _, v := range s.Volumes {
				if v.Type != types.VolumeTypeBind || !strings.HasPrefix(v.Source, root) {
					continue // a named volume, or the host's own /var/log
				}
				_, err := os.Stat(v.Source)
				require.NoError(t, err, "service %s mounts %s, not in the repository", s.Name, v.Source)
				n++
			}
		}
		require.NotZero(t, n)
	})

	t.Run("addresses name services and their ports", func(t *testing.T) {
		gw, err := p.GetService("gateway")
		require.NoError(t, err)
		checkAddress(t, p, "gateway -kafka.brokers", flagValue(gw, "kafka.brokers"), ports)
		sinks := map[string]string{
			"ingester-prometheus":    "prometheus.url",
			"ingester-loki":          "loki.url",
			"ingester-elasticsearch": "elasticsearch.addresses",
			"ingester-jaeger":        "jaeger.addresses",
			"ingester-spanmetrics":   "prometheus.url",
		}
		for name, flag := range sinks {
			s, err := p.GetService(name)
			require.NoError(t, err, "no service %s", name)
			checkAddress(t, p, name+" -kafka.brokers", flagValue(s, "kafka.brokers"), ports)
			checkAddress(t, p, name+" -"+flag, flagValue(s, flag), ports)
		}
		sm, _ := p.GetService("ingester-spanmetrics")
		require.True(t, slices.Contains(sm.Command, "-spanmetrics.enabled"))
		jc := readYAMLMap(t, filepath.Join(root, "deploy/local/jaeger.yaml"))
		es := jc["extensions"].(map[string]any)["jaeger_storage"].(map[string]any)["backends"].(map[string]any)["es_main"].(map[string]any)["elasticsearch"].(map[string]any)
		for _, u := range es["server_urls"].([]any) {
			checkAddress(t, p, "jaeger.yaml server_urls", u.(string), ports)
		}
	})

	t.Run("agent in host mode reaches published ports", func(t *testing.T) {
		a, err := p.GetService("agent")
		require.NoError(t, err)
		require.Equal(t, "host", a.NetworkMode)
		cfg := agentConfig(t, root)
		u, err := url.Parse(cfg.Gateway.URL)
		require.NoError(t, err)
		gw, _ := p.GetService("gateway")
		require.Equal(t, "127.0.0.1", u.Hostname())
		require.True(t, published(gw, u.Port()), "agent gateway.url %s: the gateway publishes no port %s", cfg.Gateway.URL, u.Port())
	})
}

func published(s types.ServiceConfig, port string) bool {
	for _, p := range s.Ports {
		if p.Published == port {
			return true
		}
	}
	return false
}

func builtImage(p *types.Project, image string) bool {
	for _, s := range p.Services {
		if s.Build != nil && s.Image == image {
			return true
		}
	}
	return false
}

func kafkaAdvertisedPort(t *testing.T, s types.ServiceConfig) string {
	v := s.Environment["KAFKA_ADVERTISED_LISTENERS"]
	require.NotNil(t, v)
	for _, l := range strings.Split(*v, ",") {
		if rest, ok := strings.CutPrefix(l, "PLAINTEXT://"); ok {
			host, port, err := net.SplitHostPort(rest)
			require.NoError(t, err)
			require.Equal(t, s.Name, host, "kafka advertises %s, not its service name", host)
			return port
		}
	}
	t.Fatal("kafka: no PLAINTEXT advertised listener")
	return ""
}

func agentConfig(t *testing.T, root string) *agent.Config {
	data, err := os.ReadFile(filepath.Join(root, "deploy/local/agent.yml"))
	require.NoError(t, err)
	cfg, _, err := agent.Parse(data)
	require.NoError(t, err, "deploy/local/agent.yml")
	return cfg
}

func TestLocalConfigsParse(t *testing.T) {
	root := testenv.RepoRoot(t)
	agentConfig(t, root)
	_, err := promconfig.LoadFile(filepath.Join(root, "deploy/local/prometheus.yml"), false, nil)
	require.NoError(t, err, "deploy/local/prometheus.yml")
}

func readYAMLMap(t *testing.T, path string) map[string]any {
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, yaml.Unmarshal(data, &m), path)
	return m
}
