// Package grafana holds the Grafana dashboards (dashboards/*.json). Its tests
// check that each dashboard has the shape Grafana imports, that every query
// parses, and that the pipeline dashboard's queries return data from a real
// Prometheus filled by the real pipeline.
package grafana

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
)

// dashboard is the part of Grafana's dashboard model the tests check.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type variable struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Query      any    `json:"query"` // a string, or {query: ...} for Prometheus query variables
	Multi      bool   `json:"multi"`
	IncludeAll bool   `json:"includeAll"`
	Current    struct {
		Value any `json:"value"`
	} `json:"current"`
	Datasource *datasourceRef `json:"datasource"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description"`
	Datasource  *datasourceRef `json:"datasource"`
	GridPos     struct {
		H, W, X, Y int
	} `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []target `json:"targets"`
	Panels  []panel  `json:"panels"` // a collapsed row's panels
}

type target struct {
	RefID      string         `json:"refId"`
	Expr       string         `json:"expr"`
	Datasource *datasourceRef `json:"datasource"`
}

// queryPanels returns every panel that is not a row, collapsed rows' panels
// included.
func (d dashboard) queryPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		if p.Type == "row" {
			out = append(out, p.Panels...)
			continue
		}
		out = append(out, p)
	}
	return out
}

func (d dashboard) variable(name string) (variable, bool) {
	for _, v := range d.Templating.List {
		if v.Name == name {
			return v, true
		}
	}
	return variable{}, false
}

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob("dashboards/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	out := map[string]dashboard{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		var d dashboard
		require.NoError(t, json.Unmarshal(raw, &d), f)
		out[filepath.Base(f)] = d
	}
	return out
}

// templateVar matches Grafana's variable syntaxes: $name, ${name} and
// ${name:format}.
var templateVar = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)

// expand substitutes d's template variables and Grafana's built-in ones the
// way Grafana would before sending expr: a custom variable by its current
// value, a query variable by a regex that matches everything (the "All"
// value), the interval variables by a duration.
func expand(d dashboard, expr string) (string, error) {
	return expandWith(d, expr, nil)
}

// expandWith is expand with some variables set to chosen values (a
// selected cluster instead of All).
func expandWith(d dashboard, expr string, values map[string]string) (string, error) {
	var unknown []string
	out := templateVar.ReplaceAllStringFunc(expr, func(m string) string {
		sub := templateVar.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		switch name {
		case "__rate_interval", "__interval", "__range":
			return "5m"
		case "__range_s":
			return "300"
		}
		if val, ok := values[name]; ok {
			return val
		}
		v, ok := d.variable(name)
		if !ok {
			unknown = append(unknown, m)
			return m
		}
		if s, ok := v.Current.Value.(string); ok && v.Type == "custom" {
			return s
		}
		return ".*"
	})
	if unknown != nil {
		return "", fmt.Errorf("%s: %q uses %v, neither a variable of the dashboard nor a Grafana built-in", d.UID, expr, unknown)
	}
	return out, nil
}

func mustExpand(t *testing.T, d dashboard, expr string) string {
	t.Helper()
	out, err := expand(d, expr)
	require.NoError(t, err)
	return out
}

func TestDashboardsHaveGrafanaImportShape(t *testing.T) {
	uids := map[string]string{}
	for file, d := range loadDashboards(t) {
		t.Run(file, func(t *testing.T) {
			require.NotEmpty(t, d.UID)
			require.LessOrEqual(t, len(d.UID), 40, "Grafana limits uid to 40 characters")
			require.Empty(t, uids[d.UID], "uid %s also used by %s", d.UID, uids[d.UID])
			uids[d.UID] = file
			require.NotEmpty(t, d.Title)
			require.Equal(t, 39, d.SchemaVersion)

			// One datasource variable per data source type the panels use:
			// "datasource" for the dashboard's main type (Prometheus, or
			// Loki for a logs dashboard).
			ds, ok := d.variable("datasource")
			require.True(t, ok, "no datasource variable")
			require.Equal(t, "datasource", ds.Type)
			require.Contains(t, []any{"prometheus", "loki"}, ds.Query)
			cluster, ok := d.variable("cluster")
			require.True(t, ok, "no cluster variable")
			require.Equal(t, "query", cluster.Type)
			require.True(t, cluster.Multi && cluster.IncludeAll, "cluster must be multi-select with All")
			require.Contains(t, variableQuery(cluster), "label_values(")
			require.Contains(t, variableQuery(cluster), ", cluster)")

			ids := map[int]bool{}
			for _, p := range d.Panels {
				require.False(t, ids[p.ID], "panel id %d twice", p.ID)
				ids[p.ID] = true
				require.True(t, p.GridPos.W > 0 && p.GridPos.X+p.GridPos.W <= 24 && p.GridPos.H > 0, "%s: gridPos %+v", p.Title, p.GridPos)
			}
			for _, p := range d.queryPanels() {
				require.NotEmpty(t, p.Title)
				require.NotEmpty(t, p.Description, "%s: no description", p.Title)
				// A logs panel shows lines, not values: Grafana has no unit
				// for it.
				if p.Type != "logs" {
					require.NotEmpty(t, p.FieldConfig.Defaults.Unit, "%s: no unit", p.Title)
				}
				require.NotNil(t, p.Datasource, "%s: no datasource", p.Title)
				require.Regexp(t, `^\$\{\w+\}$`, p.Datasource.UID, "%s: the datasource must be a variable, not a fixed uid", p.Title)
				dv, ok := d.variable(strings.Trim(p.Datasource.UID, "${}"))
				require.True(t, ok && dv.Type == "datasource", "%s: datasource %s is no datasource variable", p.Title, p.Datasource.UID)
				require.Equal(t, dv.Query, p.Datasource.Type, "%s: a %s panel on a %v datasource variable", p.Title, p.Datasource.Type, dv.Query)
				require.NotEmpty(t, p.Targets, "%s: no query", p.Title)
				for _, tg := range p.Targets {
					require.NotEmpty(t, tg.RefID, p.Title)
					require.Contains(t, tg.Expr, "$cluster", "%s: query ignores the cluster variable", p.Title)
				}
			}
		})
	}
}

func variableQuery(v variable) string {
	switch q := v.Query.(type) {
	case string:
		return q
	case map[string]any:
		s, _ := q["query"].(string)
		return s
	}
	return ""
}

// promQL parses with the options the Prometheus server uses by default.
var promQL = parser.NewParser(parser.Options{})

// rangeSelector matches the range of a range-vector selector or subquery.
var rangeSelector = regexp.MustCompile(`\[([^\]]+)\]`)

func TestDashboardQueriesParse(t *testing.T) {
	labelValues := regexp.MustCompile(`^label_values\((.+), *\w+\)$`)
	for file, d := range loadDashboards(t) {
		t.Run(file, func(t *testing.T) {
			for _, v := range d.Templating.List {
				if v.Type != "query" {
					continue
				}
				m := labelValues.FindStringSubmatch(variableQuery(v))
				require.NotNil(t, m, "variable %s: want label_values(selector, label), got %q", v.Name, variableQuery(v))
				_, err := promQL.ParseMetricSelector(mustExpand(t, d, m[1]))
				require.NoError(t, err, "variable %s", v.Name)
			}
			for _, p := range d.queryPanels() {
				for _, tg := range p.Targets {
					switch typ := dsType(p, tg); typ {
					case "prometheus":
						_, err := promQL.ParseExpr(mustExpand(t, d, tg.Expr))
						require.NoError(t, err, "%s %s: %s", p.Title, tg.RefID, tg.Expr)
						// Graphs follow the dashboard's resolution; only
						// stat panels (SLO windows) have fixed ranges.
						if p.Type != "stat" {
							for _, r := range rangeSelector.FindAllStringSubmatch(tg.Expr, -1) {
								require.Equal(t, "$__rate_interval", r[1], "%s %s: range [%s]", p.Title, tg.RefID, r[1])
							}
						}
					case "loki":
						// LogQL's parser lives in Loki's AGPL module: the
						// queries are run against the real Loki instead
						// (TestEventsLogsDashboardQueriesReturnData).
						require.Regexp(t, `\{[^}]*\w+\s*(=|=~)\s*"`, tg.Expr, "%s %s: no stream selector", p.Title, tg.RefID)
						// Grafana's Loki data source knows $__interval,
						// $__auto and $__range; $__rate_interval is
						// Prometheus's.
						for _, r := range rangeSelector.FindAllStringSubmatch(tg.Expr, -1) {
							require.Contains(t, []string{"$__interval", "$__range"}, r[1], "%s %s: range [%s]", p.Title, tg.RefID, r[1])
						}
					default:
						t.Fatalf("%s %s: unknown data source type %q", p.Title, tg.RefID, typ)
					}
				}
			}
		})
	}
}

func dsType(p panel, tg target) string {
	if tg.Datasource != nil && tg.Datasource.Type != "" {
		return tg.Datasource.Type
	}
	if p.Datasource != nil {
		return p.Datasource.Type
	}
	return ""
}

// The substitution itself: a dashboard variable that is not defined must
// not slip through as a literal "$x" that happens to parse somewhere.
func TestExpandRejectsUnknownVariables(t *testing.T) {
	d := dashboard{UID: "x"}
	d.Templating.List = []variable{{Name: "cluster", Type: "query"}}
	require.Equal(t, `up{cluster=~".*"}[5m]`, mustExpand(t, d, `up{cluster=~"${cluster}"}[$__rate_interval]`))
	_, err := expand(d, `up{ns="$namespace"}`)
	require.ErrorContains(t, err, "$namespace")
}
