package lokipush

import (
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
)

// TestParseLabelsAgainstPromQL cross-checks the hand-written parser with
// promql's ParseMetric (what Loki's syntax.ParseLabels calls) and
// ParseMetricSelector: what we accept both accept with the same labels; what
// ParseMetric refuses we refuse, and what we refuse ParseMetricSelector
// refuses or reads as a non-equality matcher. narrower marks input PromQL
// accepts and we refuse on purpose (see parseLabels).
func TestParseLabelsAgainstPromQL(t *testing.T) {
	tests := []struct {
		in         string
		want       []labelPair // nil: refused
		narrower   bool
		metricOnly bool // ParseMetricSelector refuses an empty selector
	}{
		{in: `{a="b"}`, want: pairs("a", "b")},
		{in: `{app="api", cluster="eu-1", namespace="prod"}`, want: pairs("app", "api", "cluster", "eu-1", "namespace", "prod")},
		{in: `{z="1",a="2"}`, want: pairs("z", "1", "a", "2")},
		{in: `{}`, want: []labelPair{}},
		{in: `{a="b",}`, want: pairs("a", "b")},
		{in: " \t{ a = \"b\" ,\n c=\"d\" }\r\n", want: pairs("a", "b", "c", "d")},
		{in: `{a=""}`, want: pairs("a", "")},
		{in: `{a="b", a="c"}`, want: pairs("a", "b", "a", "c")},
		{in: `{_="x", __name__="y", A_9="z"}`, want: pairs("_", "x", "__name__", "y", "A_9", "z")},
		{in: `{on="1", by="2", bool="3", offset="4"}`, want: pairs("on", "1", "by", "2", "bool", "3", "offset", "4")},
		{in: `{a="\x41\u00e9\U0001F600\101\n\t\"\\"}`, want: pairs("a", "Aé😀A\n\t\"\\")},
		{in: `{a="\377"}`, want: pairs("a", "\xff")},
		{in: `{a="😀 é"}`, want: pairs("a", "😀 é")},
		{in: "{a=\"\t\x01\"}", want: pairs("a", "\t\x01")},
		{in: `{a="` + strings.Repeat("x", 300) + `"}`, want: pairs("a", strings.Repeat("x", 300))},

		{in: ``, want: []labelPair{}, metricOnly: true}, // Loki then refuses the stream, unless it is empty
		{in: " \n", want: []labelPair{}, metricOnly: true},
		{in: `a="b"`},
		{in: `{a="b"`},
		{in: `{a="b"}}`},
		{in: `{a="b"} x`},
		{in: `{a="b"},`},
		{in: `{a="b" c="d"}`},
		{in: `{a="b",,}`},
		{in: `{,}`},
		{in: `{a}`},
		{in: `{a=}`},
		{in: `{a=b}`},
		{in: `{a!="b"}`},
		{in: `{a=~"b"}`},
		{in: `{1a="b"}`},
		{in: `{a:b="c"}`},
		{in: `{a-b="c"}`},
		{in: `{a="\z"}`},
		{in: `{a="\'"}`},
		{in: `{a="\/"}`},
		{in: `{a="\x4"}`},
		{in: `{a="\u12"}`},
		{in: `{a="\ud800"}`},
		{in: `{a="\U00110000"}`},
		{in: `{a="\400"}`},
		{in: `{a="\0"}`},
		{in: "{a=\"b\nc\"}"},
		{in: "{a=\"\xff\"}"},
		{in: `{a="b\"}`},
		{in: "\v{a=\"b\"}"},
		{in: "\u00a0{a=\"b\"}"},

		{in: `{a='b'}`, narrower: true},
		{in: "{a=`b`}", narrower: true},
		{in: `up{a="b"}`, narrower: true},
		{in: `{"a.b"="c"}`, narrower: true},
		{in: `{a="b"} # comment`, narrower: true},
	}
	p := parser.NewParser(parser.Options{})
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseLabels(tc.in, nil)
			metric, metricErr := p.ParseMetric(tc.in)
			matchers, selErr := p.ParseMetricSelector(tc.in)
			if tc.want == nil {
				require.Error(t, err)
				if tc.narrower {
					require.NoError(t, metricErr, "PromQL accepts it")
				} else {
					require.Error(t, metricErr, "ParseMetric must refuse it too")
					if selErr == nil {
						require.True(t, slices.ContainsFunc(matchers, func(m *labels.Matcher) bool { return m.Type != labels.MatchEqual }),
							"ParseMetricSelector accepts it as equality matchers: %v", matchers)
					}
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, append([]labelPair{}, got...))

			// ParseMetric returns the labels sorted, duplicates kept.
			require.NoError(t, metricErr)
			var fromMetric []labelPair
			metric.Range(func(l labels.Label) { fromMetric = append(fromMetric, labelPair{l.Name, l.Value}) })
			sorted := slices.Clone(got)
			slices.SortStableFunc(sorted, func(a, b labelPair) int { return strings.Compare(a.name, b.name) })
			require.ElementsMatch(t, sorted, fromMetric)

			// ParseMetricSelector returns equality matchers in input order.
			if tc.metricOnly {
				return
			}
			require.NoError(t, selErr)
			var fromSel []labelPair
			for _, m := range matchers {
				require.Equal(t, labels.MatchEqual, m.Type)
				fromSel = append(fromSel, labelPair{m.Name, m.Value})
			}
			require.Equal(t, tc.want, append([]labelPair{}, fromSel...))
		})
	}
}

func TestRenderLabels(t *testing.T) {
	tests := []struct {
		in, cluster, want string
	}{
		{`{b="2", a="1"}`, "", `{a="1", b="2"}`},
		{`{b="2", a="1"}`, "eu", `{a="1", b="2", cluster="eu"}`},
		{`{z="", a="x\ny\"z"}`, "eu", `{a="x\ny\"z", cluster="eu"}`},
		{`{a="é😀\x01"}`, "", `{a="é😀\x01"}`},
	}
	p := parser.NewParser(parser.Options{})
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			ps, err := parseLabels(tc.in, nil)
			require.NoError(t, err)
			got := normalize(ps).render(tc.cluster)
			require.Equal(t, tc.want, got)
			// The rendering is Prometheus' own.
			ls, err := p.ParseMetric(got)
			require.NoError(t, err)
			require.Equal(t, ls.String(), got)
		})
	}
}

func TestParseLabelsDoesNotAllocate(t *testing.T) {
	var scratch [16]labelPair
	in := `{app="api", cluster="eu-1", container="api", namespace="prod", pod="api-7d9f", job="prod/api"}`
	allocs := testing.AllocsPerRun(100, func() {
		ps, err := parseLabels(in, scratch[:0])
		if err != nil || len(ps) != 6 {
			t.Fatal(err)
		}
		ls := normalize(ps)
		if err := ls.check(testLimits(), "", func() string { return in }); err != nil {
			t.Fatal(err)
		}
	})
	require.Zero(t, allocs)
}

func pairs(kv ...string) []labelPair {
	out := []labelPair{}
	for i := 0; i < len(kv); i += 2 {
		out = append(out, labelPair{kv[i], kv[i+1]})
	}
	return out
}
