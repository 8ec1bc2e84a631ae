package otlplogs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
)

func convertOne(t *testing.T, c *Converter, ld plog.Logs) push.Stream {
	t.Helper()
	body, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	require.NoError(t, err)
	res, err := c.Convert(body, false, "dflt")
	require.NoError(t, err)
	raw, err := snappy.Decode(nil, res.Body)
	require.NoError(t, err)
	var pr push.PushRequest
	require.NoError(t, pr.Unmarshal(raw))
	require.Len(t, pr.Streams, 1)
	return pr.Streams[0]
}

func meta(e push.Entry) map[string]string {
	m := map[string]string{}
	for _, l := range e.StructuredMetadata {
		m[l.Name] = l.Value
	}
	return m
}

// A config file in the shape of Loki's otlp_config moves attributes
// between stream labels, structured metadata and nothing: the defaults
// come first, then the rules in order (first match wins), regexes match
// whole names.
func TestConfigFileRules(t *testing.T) {
	path := filepath.Join(t.TempDir(), "otlp.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
resource_attributes:
  attributes_config:
    - action: index_label
      attributes: [service.group]
    - action: drop
      regex: host\..*
    - action: drop
      attributes: [k8s.pod.name]
log_attributes:
  - action: drop
    regex: secret
`), 0o644))
	cfg, err := LoadConfig(path)
	require.NoError(t, err)
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	ra := rl.Resource().Attributes()
	ra.PutStr("service.name", "svc")
	ra.PutStr("service.group", "g1")
	ra.PutStr("host.name", "h1")
	ra.PutStr("k8s.pod.name", "p1") // a default index label: it stays one
	ra.PutStr("region.hint", "r")
	lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.Body().SetStr("x")
	lr.Attributes().PutStr("secret", "s")
	lr.Attributes().PutStr("secret.key", "kept: the regex matches whole names")
	st := convertOne(t, NewConverter(cfg), ld)
	require.Equal(t, `{cluster="dflt", k8s_pod_name="p1", service_group="g1", service_name="svc"}`, st.Labels)
	require.Equal(t, map[string]string{"region_hint": "r", "secret_key": "kept: the regex matches whole names"}, meta(st.Entries[0]))

	// ignore_defaults: only the rules make labels.
	require.NoError(t, os.WriteFile(path, []byte("resource_attributes:\n  ignore_defaults: true\n  attributes_config:\n    - action: index_label\n      attributes: [service.group]\n"), 0o644))
	cfg, err = LoadConfig(path)
	require.NoError(t, err)
	st = convertOne(t, NewConverter(cfg), ld)
	require.Equal(t, `{cluster="dflt", service_group="g1"}`, st.Labels)
	require.Equal(t, "svc", meta(st.Entries[0])["service_name"])
}

func TestConfigFileRefusals(t *testing.T) {
	for name, body := range map[string]string{
		"unknown key":           "resource_attribute: {}\n",
		"index_label for logs":  "log_attributes:\n  - action: index_label\n    attributes: [a]\n",
		"unknown action":        "scope_attributes:\n  - action: keep\n    attributes: [a]\n",
		"rule matching nothing": "scope_attributes:\n  - action: drop\n",
		"bad regex":             "log_attributes:\n  - action: drop\n    regex: '('\n",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "otlp.yaml")
			require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
			_, err := LoadConfig(path)
			require.Error(t, err)
		})
	}
}
