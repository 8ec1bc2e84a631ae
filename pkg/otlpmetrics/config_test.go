package otlpmetrics

import (
	"context"
	"flag"
	"sort"
	"strings"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

func parseConfig(t *testing.T, args ...string) (Config, error) {
	t.Helper()
	var c Config
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	c.RegisterFlags("otlp.metrics.", fs)
	require.NoError(t, fs.Parse(args))
	return c, c.Validate(false)
}

// The flags are refused where Prometheus refuses its otlp: section, and
// where the gateway's own name check would refuse every series.
func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-otlp.metrics.translation-strategy=NoTranslation"}, "-limits.metrics.utf8-names"},
		{[]string{"-otlp.metrics.translation-strategy=Bogus"}, "UnderscoreEscapingWithSuffixes"},
		{[]string{"-otlp.metrics.promote-all-resource-attributes", "-otlp.metrics.promote-resource-attributes=a"}, "cannot both be set"},
		{[]string{"-otlp.metrics.ignore-resource-attributes=a"}, "needs otlp.metrics.promote-all-resource-attributes"},
		{[]string{"-otlp.metrics.promote-resource-attributes=a,b,a"}, "listed twice"},
	} {
		_, err := parseConfig(t, tc.args...)
		require.ErrorContains(t, err, tc.want, "%v", tc.args)
	}
	_, err := parseConfig(t, "-otlp.metrics.promote-all-resource-attributes", "-otlp.metrics.ignore-resource-attributes=host.name")
	require.NoError(t, err)
}

func seriesNames(t *testing.T, body []byte) []string {
	t.Helper()
	raw, err := snappy.Decode(nil, body)
	require.NoError(t, err)
	var wr prompb.WriteRequest
	require.NoError(t, wr.Unmarshal(raw))
	var out []string
	for _, ts := range wr.Timeseries {
		var ls []string
		for _, l := range ts.Labels {
			ls = append(ls, l.Name+"="+l.Value)
		}
		out = append(out, strings.Join(ls, ","))
	}
	sort.Strings(out)
	return out
}

// The options reach the translator: promoted resource attributes become
// labels of every series, and without suffixes names stay as built.
func TestConfigOptionsApply(t *testing.T) {
	cfg, err := parseConfig(t, "-otlp.metrics.promote-resource-attributes=host.name", "-otlp.metrics.translation-strategy=UnderscoreEscapingWithoutSuffixes")
	require.NoError(t, err)
	md := seedMetrics()
	md.ResourceMetrics().At(0).Resource().Attributes().PutStr("host.name", "n1")
	body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	require.NoError(t, err)
	res, err := NewConverter(cfg).Convert(context.Background(), body, false, "")
	require.NoError(t, err)
	names := seriesNames(t, res.Body)
	require.Contains(t, names, "__name__=g,cluster=c,host_name=n1,job=s")
	require.Contains(t, names, "__name__=h_bucket,cluster=c,host_name=n1,job=s,le=1")
	require.Equal(t, map[string]int{ReasonDelta: 1}, res.ByReason)
}
