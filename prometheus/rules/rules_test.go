// Package rules holds the Prometheus rule files (*.rules.yaml). Its tests
// load them with Prometheus's rulefmt and run their unit tests
// (*.rules.test.yaml, `promtool test rules` format) with the Prometheus
// rules manager over a promqltest storage, the way promtool does.
package rules

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/tributary-io/tributary/internal/testenv"
)

var promQL = parser.NewParser(parser.Options{})

func TestRuleFilesLoad(t *testing.T) {
	files, err := filepath.Glob("*.rules.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		groups, errs := rulefmt.ParseFile(f, false, model.UTF8Validation, promQL, promslog.NewNopLogger())
		require.Empty(t, errs, f)
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				require.NotEmpty(t, r.Labels["severity"], "%s: %s has no severity", f, r.Alert)
				require.NotEmpty(t, r.Annotations["summary"], "%s: %s has no summary", f, r.Alert)
			}
		}
	}
}

// unitTests is the `promtool test rules` file format (the part these tests
// use: alert tests, no promql_expr_test).
type unitTests struct {
	RuleFiles          []string        `yaml:"rule_files"`
	EvaluationInterval model.Duration  `yaml:"evaluation_interval"`
	Tests              []unitTestGroup `yaml:"tests"`
}

type unitTestGroup struct {
	Name        string         `yaml:"name"`
	Interval    model.Duration `yaml:"interval"`
	InputSeries []struct {
		Series string `yaml:"series"`
		Values string `yaml:"values"`
	} `yaml:"input_series"`
	AlertRuleTests []alertTest `yaml:"alert_rule_test"`
}

type alertTest struct {
	EvalTime  model.Duration `yaml:"eval_time"`
	Alertname string         `yaml:"alertname"`
	ExpAlerts []struct {
		ExpLabels      map[string]string `yaml:"exp_labels"`
		ExpAnnotations map[string]string `yaml:"exp_annotations"`
	} `yaml:"exp_alerts"`
}

func loadUnitTests(t *testing.T, file string) unitTests {
	t.Helper()
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var u unitTests
	require.NoError(t, dec.Decode(&u), file)
	require.NotEmpty(t, u.Tests, file)
	return u
}

func TestAlertRuleUnitTests(t *testing.T) {
	files, err := filepath.Glob("*.rules.test.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		u := loadUnitTests(t, f)
		for _, g := range u.Tests {
			t.Run(g.Name, func(t *testing.T) {
				for _, failure := range runUnitTestGroup(t, u, g) {
					t.Error(failure)
				}
			})
		}
	}
}

// Every alerting rule of the rule files is fired by at least one test.
func TestEveryAlertHasAFiringTest(t *testing.T) {
	fired := map[string]bool{}
	files, err := filepath.Glob("*.rules.test.yaml")
	require.NoError(t, err)
	var ruleFiles []string
	for _, f := range files {
		u := loadUnitTests(t, f)
		ruleFiles = append(ruleFiles, u.RuleFiles...)
		for _, g := range u.Tests {
			for _, a := range g.AlertRuleTests {
				if len(a.ExpAlerts) > 0 {
					fired[a.Alertname] = true
				}
			}
		}
	}
	for _, f := range ruleFiles {
		groups, errs := rulefmt.ParseFile(f, false, model.UTF8Validation, promQL, promslog.NewNopLogger())
		require.Empty(t, errs)
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				if r.Alert != "" {
					require.True(t, fired[r.Alert], "no test fires %s", r.Alert)
				}
			}
		}
	}
}

// runUnitTestGroup loads g's input series, evaluates u's rule groups (in
// file order, so recording rules come before the alerts that read them)
// every evaluation interval from 0 to the last eval_time, and compares the
// firing alerts at each eval_time with the expected ones. It returns one
// message per mismatch.
func runUnitTestGroup(t *testing.T, u unitTests, g unitTestGroup) []string {
	t.Helper()
	var load strings.Builder
	fmt.Fprintf(&load, "load %s\n", g.Interval)
	for _, s := range g.InputSeries {
		fmt.Fprintf(&load, "  %s %s\n", s.Series, s.Values)
	}
	suite, err := promqltest.NewLazyLoader(load.String(), promqltest.LazyLoaderOpts{
		EnableAtModifier: true, EnableNegativeOffset: true, Parser: promQL,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = suite.Close() })

	mgr := rules.NewManager(&rules.ManagerOptions{
		QueryFunc:    rules.EngineQueryFunc(suite.QueryEngine(), suite.Storage()),
		AppendableV2: suite.Storage(),
		Context:      context.Background(),
		NotifyFunc:   func(context.Context, string, ...*rules.Alert) {},
		Logger:       promslog.NewNopLogger(),
		Parser:       promQL,
	})
	groupsByKey, errs := mgr.LoadGroups(time.Duration(u.EvaluationInterval), labels.EmptyLabels(), "", nil, false, u.RuleFiles...)
	require.Empty(t, errs)
	groups := make([]*rules.Group, 0, len(groupsByKey))
	for _, f := range u.RuleFiles {
		parsed, errs := rulefmt.ParseFile(f, false, model.UTF8Validation, promQL, promslog.NewNopLogger())
		require.Empty(t, errs)
		for _, rg := range parsed.Groups {
			groups = append(groups, groupsByKey[rules.GroupKey(f, rg.Name)])
		}
	}
	require.NotContains(t, groups, (*rules.Group)(nil))
	for _, grp := range groups {
		for _, r := range grp.Rules() {
			if ar, ok := r.(*rules.AlertingRule); ok {
				// As after a restore: otherwise the manager waits for the
				// first evaluation before it fires.
				ar.SetRestored(true)
			}
		}
	}

	byTime := map[time.Duration][]alertTest{}
	var last time.Duration
	for _, a := range g.AlertRuleTests {
		byTime[time.Duration(a.EvalTime)] = append(byTime[time.Duration(a.EvalTime)], a)
		last = max(last, time.Duration(a.EvalTime))
	}
	require.NotEmpty(t, byTime, "%s: no alert tests", g.Name)

	var failures []string
	step := time.Duration(u.EvaluationInterval)
	start := time.Unix(0, 0).UTC()
	for at := time.Duration(0); at <= last; at += step {
		ts := start.Add(at)
		suite.WithSamplesTill(ts, func(err error) {
			require.NoError(t, err)
			for _, grp := range groups {
				grp.Eval(suite.Context(), ts)
				for _, r := range grp.Rules() {
					require.NoError(t, r.LastError(), "rule %s at %s", r.Name(), at)
				}
			}
		})
		for _, a := range byTime[at] {
			got := firing(groups, a.Alertname)
			var want []string
			for _, e := range a.ExpAlerts {
				l := maps.Clone(e.ExpLabels)
				if l == nil {
					l = map[string]string{}
				}
				l["alertname"] = a.Alertname
				want = append(want, describeAlert(labels.FromMap(l), labels.FromMap(e.ExpAnnotations)))
			}
			sort.Strings(want)
			if !slices.Equal(want, got) {
				failures = append(failures, fmt.Sprintf("%s at %s:\n  want %q\n  got  %q", a.Alertname, at, want, got))
			}
		}
	}
	return failures
}

// firing returns the firing alerts named name, each as its labels and
// annotations, sorted.
func firing(groups []*rules.Group, name string) []string {
	var out []string
	for _, g := range groups {
		for _, r := range g.Rules() {
			ar, ok := r.(*rules.AlertingRule)
			if !ok || ar.Name() != name {
				continue
			}
			for _, a := range ar.ActiveAlerts() {
				if a.State == rules.StateFiring {
					out = append(out, describeAlert(a.Labels, a.Annotations))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func describeAlert(l, annotations labels.Labels) string {
	return l.String() + " " + annotations.String()
}

// The same files through the real promtool (Debian's prometheus package,
// installed with Prometheus): the Go runner above and promtool agree on
// the format and the results.
func TestPromtoolAgrees(t *testing.T) {
	testenv.PrometheusBinary(t)
	promtool, err := exec.LookPath("promtool")
	require.NoError(t, err, "promtool comes with the prometheus package")
	files, err := filepath.Glob("*.rules.test.yaml")
	require.NoError(t, err)
	out, err := exec.Command(promtool, append([]string{"test", "rules"}, files...)...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "SUCCESS")
}
