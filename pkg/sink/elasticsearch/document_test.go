package elasticsearch

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/pkg/ingester"
)

// Label names reach Elasticsearch exactly as the stream has them: the
// flattened mapping makes dotted names safe, so there is nothing to rename.
func TestLabelsJSON(t *testing.T) {
	for _, tc := range []struct{ labels, want string }{
		{`{app="x", "app.kubernetes.io/name"="y"}`, `{"app":"x","app.kubernetes.io/name":"y"}`},
		{`{"app.kubernetes.io/name"="y", app="x", cluster="c"}`, `{"app":"x","app.kubernetes.io/name":"y","cluster":"c"}`},
		{`{a="1", "a.b"="2", "a.b.c"="3", a_b="4"}`, `{"a":"1","a.b":"2","a.b.c":"3","a_b":"4"}`},
		{`{msg="quote \" backslash \\ <tag> & é \u00e9"}`, `{"msg":"quote \" backslash \\ <tag> & é é"}`},
		{`{a="1", a="2"}`, `{"a":"2"}`}, // Loki refuses duplicates; the last wins here
		{`{}`, ``},
	} {
		t.Run(tc.labels, func(t *testing.T) {
			ls, err := parser.NewParser(parser.Options{}).ParseMetric(tc.labels)
			require.NoError(t, err)
			got, err := labelsJSON(ls)
			require.NoError(t, err)
			require.Equal(t, tc.want, string(got))
		})
	}
}

func TestEncode(t *testing.T) {
	p, err := parseIndexPattern(DefaultIndex)
	require.NoError(t, err)
	enc := newEncoder(p, 1<<20)
	ts := time.Date(2024, 5, 1, 12, 0, 0, 5, time.UTC)
	r1 := logRecord(t, 2, 9, "", "", // no cluster in the envelope: the label's
		stream(`{cluster="from-label", app="x"}`, entry(ts, "one"), entry(ts.Add(24*time.Hour), "two", "k", "v")))
	r2 := logRecord(t, 2, 10, "env", "t", stream(`{cluster="from-label"}`, entry(ts, "three")))
	docs, err := enc.encode(nil, []ingester.Record{r1, r2})
	require.NoError(t, err)

	type doc struct {
		index string
		src   map[string]any
	}
	var got []doc
	for _, d := range docs {
		var src map[string]any
		require.NoError(t, json.Unmarshal(d.body, &src), "%s", d.body)
		got = append(got, doc{d.index, src})
		require.Regexp(t, `^[A-Za-z0-9_-]{22}$`, d.id)
	}
	require.Equal(t, []doc{
		{"tributary-logs-2024.05.01", map[string]any{"@timestamp": "2024-05-01T12:00:00.000000005Z", "message": "one", "cluster": "from-label",
			"labels": map[string]any{"cluster": "from-label", "app": "x"}}},
		{"tributary-logs-2024.05.02", map[string]any{"@timestamp": "2024-05-02T12:00:00.000000005Z", "message": "two", "cluster": "from-label",
			"labels": map[string]any{"cluster": "from-label", "app": "x"}, "metadata": map[string]any{"k": "v"}}},
		{"tributary-logs-2024.05.01", map[string]any{"@timestamp": "2024-05-01T12:00:00.000000005Z", "message": "three", "cluster": "env", "tenant": "t",
			"labels": map[string]any{"cluster": "from-label"}}},
	}, got)

	// Same records, same ids and bodies: a replay overwrites.
	again, err := newEncoder(p, 1<<20).encode(nil, []ingester.Record{r1, r2})
	require.NoError(t, err)
	for i := range docs {
		require.Equal(t, docs[i].id, again[i].id)
		require.Equal(t, string(docs[i].body), string(again[i].body))
	}
}

// Document ids depend on the content only: the same entries at another
// offset, partition or topic (a client's retry after a 503) get the same
// ids; any change of content gives another id; identical entries within a
// record are numbered, so none overwrites another.
func TestDocumentIDs(t *testing.T) {
	p, err := parseIndexPattern(DefaultIndex)
	require.NoError(t, err)
	ts := time.Date(2024, 5, 1, 12, 0, 0, 5, time.UTC)
	const labels = `{app="api", cluster="eu-1"}`
	ids := func(recs ...ingester.Record) []string {
		docs, err := newEncoder(p, 1<<20).encode(nil, recs)
		require.NoError(t, err)
		var out []string
		for _, d := range docs {
			out = append(out, d.id)
		}
		return out
	}
	base := ids(logRecord(t, 0, 1, "eu-1", "team", stream(labels, entry(ts, "line", "k", "v", "k2", "v2"))))[0]

	t.Run("where the record landed does not matter", func(t *testing.T) {
		r := logRecord(t, 5, 999, "eu-1", "team", stream(labels, entry(ts, "line", "k", "v", "k2", "v2")))
		r.Topic = "other"
		require.Equal(t, base, ids(r)[0])
		// Nor the order of label names or of metadata.
		r = logRecord(t, 0, 1, "eu-1", "team", stream(`{cluster="eu-1", app="api"}`, entry(ts, "line", "k2", "v2", "k", "v")))
		require.Equal(t, base, ids(r)[0])
		// Nor the other entries of the record.
		r = logRecord(t, 0, 1, "eu-1", "team", stream(`{app="other"}`, entry(ts, "x")), stream(labels, entry(ts, "line", "k", "v", "k2", "v2")))
		require.Equal(t, base, ids(r)[1])
	})

	t.Run("any change of content changes the id", func(t *testing.T) {
		for name, r := range map[string]ingester.Record{
			"cluster":   logRecord(t, 0, 1, "eu-2", "team", stream(labels, entry(ts, "line", "k", "v", "k2", "v2"))),
			"tenant":    logRecord(t, 0, 1, "eu-1", "other", stream(labels, entry(ts, "line", "k", "v", "k2", "v2"))),
			"labels":    logRecord(t, 0, 1, "eu-1", "team", stream(`{app="web", cluster="eu-1"}`, entry(ts, "line", "k", "v", "k2", "v2"))),
			"timestamp": logRecord(t, 0, 1, "eu-1", "team", stream(labels, entry(ts.Add(1), "line", "k", "v", "k2", "v2"))),
			"line":      logRecord(t, 0, 1, "eu-1", "team", stream(labels, entry(ts, "line!", "k", "v", "k2", "v2"))),
			"metadata":  logRecord(t, 0, 1, "eu-1", "team", stream(labels, entry(ts, "line", "k", "v", "k2", "v3"))),
		} {
			require.NotEqual(t, base, ids(r)[0], name)
		}
	})

	t.Run("identical entries within a record are numbered", func(t *testing.T) {
		e := entry(ts, "line", "k", "v", "k2", "v2")
		got := ids(
			logRecord(t, 0, 1, "eu-1", "team", stream(labels, e, e), stream(labels, e)),
			logRecord(t, 0, 2, "eu-1", "team", stream(labels, e)),
		)
		// The second record is counted on its own: the same request
		// stored twice overwrites, entry for entry.
		require.Equal(t, []string{base, base + "-1", base + "-2", base}, got)
	})
}

// FuzzEncode feeds arbitrary record values to the decoder: it must refuse
// or encode, never panic, and what it encodes must be valid JSON.
func FuzzEncode(f *testing.F) {
	raw, _ := (&push.PushRequest{Streams: []push.Stream{{Labels: `{app="x", "a.b"="y"}`, Entries: []push.Entry{
		{Timestamp: time.Unix(1700000000, 1), Line: "hello", StructuredMetadata: push.LabelsAdapter{{Name: "k", Value: "v"}}},
	}}}}).Marshal()
	f.Add(snappy.Encode(nil, raw))
	f.Add(raw)
	f.Add([]byte{})
	p, err := parseIndexPattern(DefaultIndex)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		enc := newEncoder(p, 1<<20)
		docs, err := enc.encode(nil, []ingester.Record{{Topic: "t", Value: value}})
		if err != nil {
			return
		}
		for _, d := range docs {
			if !json.Valid(d.body) {
				t.Fatalf("invalid JSON: %q", d.body)
			}
		}
	})
}
