package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLokiPushQueryRestart(t *testing.T) {
	t.Parallel()
	loki := Loki(t)

	// Timestamps a day old: Loki must accept and return old samples.
	base := time.Now().Add(-26 * time.Hour).Truncate(time.Second).UTC()
	labels := map[string]string{"job": "tributary-smoke", "env": "test"}
	want := []LokiStream{{
		Labels: labels,
		Entries: []LokiEntry{
			{TS: base, Line: "first line"},
			{TS: base.Add(1500 * time.Millisecond), Line: `second line with "quotes" and ünïcode`, Metadata: map[string]string{"trace_id": "abc123", "user": "u-1"}},
			{TS: base.Add(2*time.Second + 7), Line: "third line"},
		},
	}}

	values := make([][]any, 0, len(want[0].Entries))
	for _, e := range want[0].Entries {
		v := []any{strconv.FormatInt(e.TS.UnixNano(), 10), e.Line}
		if e.Metadata != nil {
			v = append(v, e.Metadata)
		}
		values = append(values, v)
	}
	push, err := json.Marshal(map[string]any{"streams": []any{map[string]any{"stream": labels, "values": values}}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(loki.URL+"/loki/api/v1/push", "application/json", bytes.NewReader(push))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("push: HTTP %d", resp.StatusCode)
	}

	query := `{job="tributary-smoke"}`
	from, to := base.Add(-time.Minute), base.Add(time.Minute)
	check := func() error {
		got, err := loki.QueryRange(t, query, from, to, 100)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, want) {
			return fmt.Errorf("query_range returned\n%+v\nwant\n%+v", got, want)
		}
		return nil
	}
	Eventually(t, 15*time.Second, check)

	// Limit and an empty range.
	got, err := loki.QueryRange(t, query, from, to, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[0].Entries) != 2 || got[0].Entries[1].Line != want[0].Entries[1].Line {
		t.Fatalf("limit 2: got %+v", got)
	}
	got, err = loki.QueryRange(t, query, base.Add(time.Hour), base.Add(2*time.Hour), 100)
	if err != nil || len(got) != 0 {
		t.Fatalf("empty range: got %+v, %v", got, err)
	}

	// Graceful restart: same URL, same data.
	url := loki.URL
	loki.Restart(t)
	if loki.URL != url {
		t.Fatalf("URL changed on restart: %s -> %s", url, loki.URL)
	}
	Eventually(t, 15*time.Second, check)

	// Crash (SIGKILL) and restart: the WAL brings the data back.
	loki.Proc.Kill()
	loki.Restart(t)
	Eventually(t, 15*time.Second, check)
}

func TestZincBulkSearchRestart(t *testing.T) {
	t.Parallel()
	zinc := Zinc(t)

	// ES info endpoint, as an Elasticsearch client sees it.
	status, body, err := zinc.Do(http.MethodGet, "/es/", "", nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET /es/: %d %s %v", status, body, err)
	}
	var info struct {
		Version struct {
			Number string `json:"number"`
		} `json:"version"`
	}
	if err := json.Unmarshal(body, &info); err != nil || info.Version.Number != ZincESVersion {
		t.Fatalf("GET /es/: %s (%v)", body, err)
	}

	const index = "tributary-smoke"
	docs := []map[string]any{
		{"_id": "doc-1", "@timestamp": "2024-05-01T10:00:00Z", "message": "first doc", "level": "info", "n": float64(1)},
		{"_id": "doc-2", "@timestamp": "2024-05-01T10:00:01Z", "message": "second doc", "level": "warn", "n": float64(2)},
		{"_id": "doc-3", "@timestamp": "2024-05-01T10:00:02Z", "message": "third doc", "level": "info", "n": float64(3)},
	}
	var bulk bytes.Buffer
	for _, d := range docs {
		src := make(map[string]any, len(d))
		for k, v := range d {
			if k != "_id" {
				src[k] = v
			}
		}
		action, _ := json.Marshal(map[string]any{"index": map[string]any{"_index": index, "_id": d["_id"]}})
		line, _ := json.Marshal(src)
		bulk.Write(action)
		bulk.WriteByte('\n')
		bulk.Write(line)
		bulk.WriteByte('\n')
	}

	// The _bulk call with plain net/http and basic auth, as a client would.
	req, err := http.NewRequest(http.MethodPost, zinc.ESURL+"/_bulk", &bulk)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(zinc.User, zinc.Password)
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var br struct {
		Errors bool             `json:"errors"`
		Error  string           `json:"error"`
		Items  []map[string]any `json:"items"`
	}
	err = json.NewDecoder(resp.Body).Decode(&br)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || br.Errors || br.Error != "" || len(br.Items) != len(docs) {
		t.Fatalf("bulk: HTTP %d, %+v, %v", resp.StatusCode, br, err)
	}

	// Unauthenticated requests are refused.
	resp, err = http.Post(zinc.ESURL+"/"+index+"/_search", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("search without auth: HTTP %d", resp.StatusCode)
	}

	query := map[string]any{
		"query": map[string]any{"match_all": map[string]any{}},
		"sort":  []any{map[string]any{"n": "asc"}},
		"size":  10,
	}
	check := func() error {
		got, total, err := zinc.Search(t, index, query)
		if err != nil {
			return err
		}
		if total != len(docs) || !reflect.DeepEqual(got, docs) {
			return fmt.Errorf("search returned total %d\n%v\nwant\n%v", total, got, docs)
		}
		return nil
	}
	Eventually(t, 15*time.Second, check)

	// A filtered query.
	got, total, err := zinc.Search(t, index, map[string]any{
		"query": map[string]any{"bool": map[string]any{"filter": []any{
			map[string]any{"term": map[string]any{"level": "warn"}},
		}}},
	})
	if err != nil || total != 1 || len(got) != 1 || got[0]["_id"] != "doc-2" {
		t.Fatalf("term query: %v %d %v", got, total, err)
	}

	// Graceful restart, then crash and restart: same URL, same documents.
	url := zinc.URL
	zinc.Restart(t)
	if zinc.URL != url {
		t.Fatalf("URL changed on restart: %s -> %s", url, zinc.URL)
	}
	Eventually(t, 15*time.Second, check)
	zinc.Proc.Kill()
	zinc.Restart(t)
	Eventually(t, 15*time.Second, check)
}
