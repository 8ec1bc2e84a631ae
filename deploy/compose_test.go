package deploy

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/prometheus/common/promslog"
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
	loki, err := p.GetService("loki")
	require.NoError(t, err)
	require.True(t, slices.Contains(loki.Command, "-config.expand-env=true"), "loki: deploy/local/loki.yaml's ${NAME:-default}s need -config.expand-env=true")
	lokiCfg := readYAMLMap(t, filepath.Join(root, "deploy/local/loki.yaml"))
	ports["loki"] = envDefault(fmt.Sprint(lokiCfg["server"].(map[string]any)["http_listen_port"]))

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

	// The images are the versions the tests run: the configs they mount are
	// validated by the Loki and Jaeger the build scripts build (loki
	// -verify-config, jaeger validate), and Prometheus 3 is the one
	// build-prometheus.sh builds for the OTLP tests (its promtool is not
	// built; Debian's checks prometheus.yml). An image of another version
	// could read the same file differently.
	t.Run("images are the validated versions", func(t *testing.T) {
		want := map[string]string{
			"loki":       "grafana/loki:" + strings.TrimPrefix(scriptVersion(t, root, "build-loki.sh", "LOKI_VERSION"), "v"),
			"jaeger":     "jaegertracing/jaeger:" + jaegerV2(t, scriptVersion(t, root, "build-jaeger.sh", "JAEGER_VERSION")),
			"prometheus": "prom/prometheus:" + prometheusV3(t, scriptVersion(t, root, "build-prometheus.sh", "PROM_MODULE_VERSION")),
		}
		for name, image := range want {
			s, err := p.GetService(name)
			require.NoError(t, err)
			require.Equal(t, image, s.Image, "service %s: the image is not the version its config is validated with", name)
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
			checkAddress(t, p, "jaeger.yaml server_urls", envDefault(u.(string)), ports)
		}
	})

	t.Run("agent in host mode reaches published ports", func(t *testing.T) {
		a, err := p.GetService("agent")
		require.NoError(t, err)
		require.Equal(t, "host", a.NetworkMode)
		cfg := agentConfig(t, root, composeEnv(a))
		u, err := url.Parse(cfg.Gateway.URL)
		require.NoError(t, err)
		gw, _ := p.GetService("gateway")
		require.Equal(t, "127.0.0.1", u.Hostname())
		require.True(t, published(gw, u.Port()), "agent gateway.url %s: the gateway publishes no port %s", cfg.Gateway.URL, u.Port())
		// Every scrape target is a port some service publishes, or the
		// agent's own listener.
		self := flagValue(a, "http.listen-addr")
		env := composeEnv(a)
		require.Equal(t, self, env["AGENT_ADDR"], "the agent scrapes itself where it listens")
		for _, name := range []string{"GATEWAY_ADDR", "PROMETHEUS_ADDR", "INGESTER_ADDRS"} {
			for _, addr := range strings.Split(strings.ReplaceAll(env[name], `"`, ""), ",") {
				host, port, err := net.SplitHostPort(strings.TrimSpace(addr))
				require.NoError(t, err, "%s=%s", name, env[name])
				require.Equal(t, "127.0.0.1", host, name)
				require.True(t, publishedBySome(p, port), "%s: no service publishes port %s", name, port)
			}
		}
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

func publishedBySome(p *types.Project, port string) bool {
	for _, s := range p.Services {
		if published(s, port) {
			return true
		}
	}
	return false
}

// composeEnv is a service's environment as compose passes it.
func composeEnv(s types.ServiceConfig) map[string]string {
	env := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	return env
}

// envDefaultRef is ${NAME:-default} (Loki's -config.expand-env) or
// ${env:NAME:-default} (the OpenTelemetry Collector's, Jaeger v2's).
var envDefaultRef = regexp.MustCompile(`\$\{(?:env:)?[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}`)

// envDefault is s with every ${NAME:-default} replaced by its default:
// the value in the compose stack, which sets none of these variables.
func envDefault(s string) string {
	return envDefaultRef.ReplaceAllString(s, "$1")
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

// agentConfig parses deploy/local/agent.yml with the agent's own loader,
// its ${NAME}s set from env.
func agentConfig(t *testing.T, root string, env map[string]string) *agent.Config {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	data, err := os.ReadFile(filepath.Join(root, "deploy/local/agent.yml"))
	require.NoError(t, err)
	cfg, _, err := agent.Parse(data)
	require.NoError(t, err, "deploy/local/agent.yml")
	return cfg
}

func readYAMLMap(t *testing.T, path string) map[string]any {
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, yaml.Unmarshal(data, &m), path)
	return m
}

// demoEnv is the environment scripts/demo.sh gives component (agent, loki,
// jaeger): `scripts/demo.sh env <component>`.
func demoEnv(t *testing.T, root, component string) map[string]string {
	t.Helper()
	out, err := exec.Command("bash", filepath.Join(root, "scripts", "demo.sh"), "env", component).Output()
	require.NoError(t, err, "scripts/demo.sh env %s", component)
	env := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, ok := strings.Cut(l, "=")
		require.True(t, ok, l)
		env[k] = v
	}
	require.NotEmpty(t, env)
	return env
}

func environ(env map[string]string) []string {
	out := os.Environ()
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// The configuration files docker-compose.yml mounts and `make demo` runs,
// each checked by its own program, with the compose stack's environment
// and with the demo's: the agent's config loader, `loki -verify-config`,
// `jaeger validate`, `promtool check config` and Prometheus's config
// package. Grafana's provisioning files: no Grafana here, so a decode into
// Grafana's file format (its provisioning structs' fields, written out
// here) with unknown fields refused.
func TestLocalConfigsValidatedByTheirPrograms(t *testing.T) {
	root := testenv.RepoRoot(t)
	p := loadCompose(t, root)
	agentSvc, err := p.GetService("agent")
	require.NoError(t, err)

	t.Run("agent", func(t *testing.T) {
		for name, env := range map[string]map[string]string{"compose": composeEnv(agentSvc), "demo": demoEnv(t, root, "agent")} {
			t.Run(name, func(t *testing.T) {
				cfg := agentConfig(t, root, env)
				require.Equal(t, env["TRIBUTARY_CLUSTER"], cfg.Cluster)
				require.NotNil(t, cfg.Logs)
				require.NotNil(t, cfg.OTLP)
			})
		}
	})

	t.Run("loki", func(t *testing.T) {
		loki := testenv.LokiBinary(t)
		for name, env := range map[string]map[string]string{"compose": nil, "demo": demoEnv(t, root, "loki")} {
			cmd := exec.Command(loki, "-config.file="+filepath.Join(root, "deploy/local/loki.yaml"), "-config.expand-env=true", "-verify-config")
			cmd.Env = environ(env)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s: loki -verify-config: %s", name, out)
		}
	})

	t.Run("jaeger", func(t *testing.T) {
		jaeger := testenv.JaegerBinary(t)
		for name, env := range map[string]map[string]string{"compose": nil, "demo": demoEnv(t, root, "jaeger")} {
			cmd := exec.Command(jaeger, "validate", "--config="+filepath.Join(root, "deploy/local/jaeger.yaml"))
			cmd.Env = environ(env)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s: jaeger validate: %s", name, out)
			require.NotContains(t, string(out), "rror", "%s: jaeger validate: %s", name, out)
		}
	})

	t.Run("prometheus", func(t *testing.T) {
		// The demo runs the file as it is: it names no address.
		promtool := filepath.Join(filepath.Dir(testenv.PrometheusBinary(t)), "promtool")
		out, err := exec.Command(promtool, "check", "config", filepath.Join(root, "deploy/local/prometheus.yml")).CombinedOutput()
		require.NoError(t, err, "promtool check config: %s", out)
		_, err = promconfig.LoadFile(filepath.Join(root, "deploy/local/prometheus.yml"), false, promslog.NewNopLogger())
		require.NoError(t, err, "deploy/local/prometheus.yml")
	})

	t.Run("demo runs these files", func(t *testing.T) {
		demo, err := os.ReadFile(filepath.Join(root, "scripts", "demo.sh"))
		require.NoError(t, err)
		for _, use := range []string{
			`--config.file="$ROOT/deploy/local/prometheus.yml"`,
			`-config.file="$ROOT/deploy/local/loki.yaml" -config.expand-env=true`,
			`-config.file="$ROOT/deploy/local/agent.yml"`,
			`--config="$ROOT/deploy/local/jaeger.yaml"`,
		} {
			require.Contains(t, string(demo), use)
		}
	})

	t.Run("grafana provisioning", func(t *testing.T) {
		var ds grafanaDatasources
		decodeStrict(t, filepath.Join(root, "grafana/provisioning/datasources/tributary.yaml"), &ds)
		require.Equal(t, 1, ds.APIVersion)
		types := map[string]bool{}
		for _, d := range ds.Datasources {
			require.NotEmpty(t, d.Name)
			require.NotEmpty(t, d.UID, "%s: a stable uid", d.Name)
			require.Contains(t, []string{"proxy", "direct", ""}, d.Access, d.Name)
			u, err := url.Parse(d.URL)
			require.NoError(t, err, d.Name)
			_, err = p.GetService(u.Hostname())
			require.NoError(t, err, "%s: url %s names no service", d.Name, d.URL)
			types[d.Type] = true
		}
		// The dashboards' datasource variables pick one of each type.
		for _, typ := range []string{"prometheus", "loki", "jaeger", "elasticsearch"} {
			require.True(t, types[typ], "no %s data source", typ)
		}

		var dash grafanaDashboardProviders
		decodeStrict(t, filepath.Join(root, "grafana/provisioning/dashboards/tributary.yaml"), &dash)
		require.Equal(t, 1, dash.APIVersion)
		require.Len(t, dash.Providers, 1)
		pr := dash.Providers[0]
		require.Equal(t, "file", pr.Type)
		grafana, err := p.GetService("grafana")
		require.NoError(t, err)
		mounted := false
		for _, v := range grafana.Volumes {
			mounted = mounted || (v.Target == pr.Options["path"] && v.Source == filepath.Join(root, "grafana", "dashboards"))
		}
		require.True(t, mounted, "the provider reads %v, where grafana/dashboards is not mounted", pr.Options["path"])
	})
}

// grafanaDatasources is Grafana's data source provisioning file (apiVersion
// 1): the fields of its configs and data source structs
// (pkg/services/provisioning/datasources), in their YAML names.
type grafanaDatasources struct {
	APIVersion        int `yaml:"apiVersion"`
	DeleteDatasources []struct {
		Name  string `yaml:"name"`
		UID   string `yaml:"uid"`
		OrgID int    `yaml:"orgId"`
	} `yaml:"deleteDatasources"`
	Prune       bool `yaml:"prune"`
	Datasources []struct {
		OrgID           int            `yaml:"orgId"`
		Version         int            `yaml:"version"`
		Name            string         `yaml:"name"`
		Type            string         `yaml:"type"`
		Access          string         `yaml:"access"`
		URL             string         `yaml:"url"`
		Password        string         `yaml:"password"`
		User            string         `yaml:"user"`
		Database        string         `yaml:"database"`
		BasicAuth       bool           `yaml:"basicAuth"`
		BasicAuthUser   string         `yaml:"basicAuthUser"`
		WithCredentials bool           `yaml:"withCredentials"`
		IsDefault       bool           `yaml:"isDefault"`
		JSONData        map[string]any `yaml:"jsonData"`
		SecureJSONData  map[string]any `yaml:"secureJsonData"`
		Editable        bool           `yaml:"editable"`
		UID             string         `yaml:"uid"`
	} `yaml:"datasources"`
}

// grafanaDashboardProviders is Grafana's dashboard provider provisioning
// file (apiVersion 1, pkg/services/provisioning/dashboards).
type grafanaDashboardProviders struct {
	APIVersion int `yaml:"apiVersion"`
	Providers  []struct {
		Name                  string         `yaml:"name"`
		Type                  string         `yaml:"type"`
		OrgID                 int            `yaml:"orgId"`
		Folder                string         `yaml:"folder"`
		FolderUID             string         `yaml:"folderUid"`
		Editable              bool           `yaml:"editable"`
		Options               map[string]any `yaml:"options"`
		DisableDeletion       bool           `yaml:"disableDeletion"`
		UpdateIntervalSeconds int            `yaml:"updateIntervalSeconds"`
		AllowUIUpdates        bool           `yaml:"allowUiUpdates"`
	} `yaml:"providers"`
}

// decodeStrict decodes the YAML file path into v, refusing unknown fields.
func decodeStrict(t *testing.T, path string, v any) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(v), path)
}

// scriptVersion reads NAME=value from scripts/<script>.
func scriptVersion(t *testing.T, root, script, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "scripts", script))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindSubmatch(b)
	require.NotNil(t, m, "%s sets no %s", script, name)
	return string(m[1])
}

// jaegerV2 is the Jaeger v2 release of a v1.x module version: Jaeger tags
// both at once, v1.(63+N) with v2.N (v1.76.0 / v2.13.0, its CHANGELOG).
func jaegerV2(t *testing.T, v1 string) string {
	t.Helper()
	var major, minor, patch int
	_, err := fmt.Sscanf(v1, "v%d.%d.%d", &major, &minor, &patch)
	require.NoError(t, err, v1)
	require.Equal(t, 1, major, v1)
	return fmt.Sprintf("%d.%d.%d", 2, minor-63, patch)
}

// prometheusV3 is the Prometheus release of its Go module version:
// v0.3MM.P is v3.MM.P.
func prometheusV3(t *testing.T, module string) string {
	t.Helper()
	var minor, patch int
	_, err := fmt.Sscanf(module, "v0.%d.%d", &minor, &patch)
	require.NoError(t, err, module)
	require.GreaterOrEqual(t, minor, 300, module)
	return fmt.Sprintf("v3.%d.%d", minor-300, patch)
}
