package limits

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

func TestParseFile(t *testing.T) {
	f, err := ParseFile([]byte(`
defaults:
  samples_per_second: 1000
  max_line_bytes: 4096
clusters:
  prod:
    samples_per_second: 5000
    samples_burst: 20000
    max_series_per_request: 100
`))
	require.NoError(t, err)
	require.Equal(t, Cluster{SamplesPerSecond: 1000, MaxLineBytes: 4096}, f.Defaults)
	require.Equal(t, Cluster{SamplesPerSecond: 5000, SamplesBurst: 20000, MaxSeriesPerRequest: 100}, f.Clusters["prod"])

	f, err = ParseFile(nil)
	require.NoError(t, err, "an empty file sets no limits")
	require.Equal(t, File{}, *f)

	for _, tc := range []struct{ name, file, want string }{
		{"unknown key", "defaults:\n  samples_per_sec: 1\n", "samples_per_sec"},
		{"unknown top-level key", "cluster:\n  a: {}\n", "cluster"},
		{"negative burst", "defaults:\n  samples_burst: -1\n", "samples_burst is -1"},
		{"negative bound names the cluster", "clusters:\n  prod:\n    max_line_bytes: -5\n", "clusters: prod: max_line_bytes is -5"},
		{"NaN rate", "defaults:\n  spans_per_second: .nan\n", "spans_per_second"},
		{"infinite rate", "clusters:\n  a:\n    log_bytes_per_second: .inf\n", "log_bytes_per_second"},
		{"wrong type", "defaults:\n  samples_per_second: fast\n", "fast"},
		{"clusters not a map", "clusters: [a, b]\n", "cannot unmarshal !!seq"},
		{"empty cluster name", "clusters:\n  \"\": {samples_per_second: 1}\n", "empty cluster name"},
		{"duplicate cluster", "clusters:\n  a: {}\n  a: {}\n", "already defined"},
		{"not YAML", "defaults: [\n", "yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFile([]byte(tc.file))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestReloaderKeepsLastGoodFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "limits.yaml")
	write := func(s string) { require.NoError(t, os.WriteFile(path, []byte(s), 0o600)) }
	write("defaults:\n  spans_per_second: 10\n")
	l := NewLimiter(10)
	reg := prometheus.NewRegistry()
	r := NewReloader(path, time.Hour, l, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, r.Load())
	require.Equal(t, 10.0, l.For("a").SpansPerSecond)
	count := func(outcome string) float64 {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() != "tributary_gateway_limits_reloads_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	// A change applies on the second poll that reads it.
	poll := func() { r.w.Poll(); r.w.Poll() }

	write("defaults:\n  spans_per_second: 15\n")
	r.w.Poll()
	require.Equal(t, 10.0, l.For("a").SpansPerSecond, "a change read once may be half-written: not applied yet")

	write("defaults:\n  spans_per_second: 20\n")
	poll()
	require.Equal(t, 20.0, l.For("a").SpansPerSecond, "a change is applied")
	require.Equal(t, 2.0, count("success"))

	poll()
	require.Equal(t, 2.0, count("success"), "an unchanged file is not reloaded")

	write("defaults:\n  spans_per_second: -\n  nonsense: 1\n")
	poll()
	require.Equal(t, 20.0, l.For("a").SpansPerSecond, "an invalid file leaves the last good limits")
	require.Equal(t, 1.0, count("error"))
	poll()
	require.Equal(t, 1.0, count("error"), "the same bad content is counted once")

	require.NoError(t, os.Remove(path))
	poll()
	poll()
	require.Equal(t, 20.0, l.For("a").SpansPerSecond, "a removed file leaves the last good limits")
	require.Equal(t, 2.0, count("error"))

	write("clusters:\n  a:\n    spans_per_second: 30\n")
	poll()
	require.Equal(t, 30.0, l.For("a").SpansPerSecond)
	require.Zero(t, l.For("b").SpansPerSecond)
	require.Equal(t, 3.0, count("success"))

	write(strings.Repeat("#", maxFileBytes+1))
	poll()
	require.Equal(t, 30.0, l.For("a").SpansPerSecond, "a file over the size bound is refused")
	require.Equal(t, 3.0, count("error"))
}
