package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/record"
)

// es8Bulk answers like Elasticsearch 8: the product check, the template
// install, and _bulk with per-item results. A document whose message
// contains "conflict" is refused the way ES refuses a mapping conflict.
//
// Why a stand-in: ZincSearch, the only Elasticsearch-compatible server that
// installs here, never reports per-item errors (it answers 200 with a
// top-level "error" and stops at the bad document), so it cannot show a
// mapping conflict being dead-lettered. This server speaks the ES 8 wire
// format of those responses; the rest of the path (gateway, Kafka, ingester,
// dead-letter topic) is real.
type es8Bulk struct {
	mu      sync.Mutex
	indexed map[string]string // _id -> message
}

func (s *es8Bulk) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/":
		fmt.Fprint(w, `{"version":{"number":"8.15.0","build_flavor":"default"},"tagline":"You Know, for Search"}`)
	case strings.HasPrefix(r.URL.Path, "/_index_template/"):
		fmt.Fprint(w, `{"acknowledged":true}`)
	case strings.HasSuffix(r.URL.Path, "/_bulk"):
		var items []string
		sc := bufio.NewScanner(r.Body)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var action map[string]struct {
				Index string `json:"_index"`
				ID    string `json:"_id"`
			}
			if err := json.Unmarshal(sc.Bytes(), &action); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			if !sc.Scan() {
				break
			}
			var doc struct {
				Message string `json:"message"`
			}
			_ = json.Unmarshal(sc.Bytes(), &doc)
			a := action["index"]
			if strings.Contains(doc.Message, "conflict") {
				items = append(items, fmt.Sprintf(`{"index":{"_index":%q,"_id":%q,"status":400,"error":{"type":"document_parsing_exception","reason":"[1:2] failed to parse field [labels] of type [flattened]","caused_by":{"type":"illegal_argument_exception","reason":"conflict"}}}}`, a.Index, a.ID))
				continue
			}
			s.mu.Lock()
			s.indexed[a.ID] = doc.Message
			s.mu.Unlock()
			items = append(items, fmt.Sprintf(`{"index":{"_index":%q,"_id":%q,"_version":1,"result":"created","status":201}}`, a.Index, a.ID))
		}
		errors := strings.Contains(strings.Join(items, ""), `"status":400`)
		fmt.Fprintf(w, `{"took":1,"errors":%v,"items":[%s]}`, errors, strings.Join(items, ","))
	default:
		http.NotFound(w, r)
	}
}

func (s *es8Bulk) messages() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for _, m := range s.indexed {
		out[m] = true
	}
	return out
}

// A document Elasticsearch refuses (mapping conflict) goes to the
// dead-letter topic with the reason; the documents around it are indexed.
func TestElasticsearchRefusalIsDeadLettered(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 1)
	es := &es8Bulk{indexed: map[string]string{}}
	srv := httptest.NewServer(es)
	t.Cleanup(srv.Close)
	gw := startGateway(t, k.Addr)

	ts := time.Now().UnixNano()
	for i, line := range []string{"before", "this one has a conflict", "after"} {
		body := fmt.Sprintf(`{"streams":[{"stream":{"app":"x","cluster":"es"},"values":[["%d",%q]]}]}`, ts+int64(i), line)
		code, msg, err := pushLogs(gw.URL, []byte(body), "Content-Type", "application/json")
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, code, msg)
	}
	port := testenv.FreePort(t)
	p := testenv.StartProcess(t, "ingester", testenv.Binary(t, "ingester"), []string{
		"-http.listen-addr=" + testenv.Addr(port), "-kafka.brokers=" + k.Addr,
		"-elasticsearch.addresses=" + srv.URL, "-elasticsearch.batch.max-delay=50ms", "-elasticsearch.backoff.max=1s",
	})
	testenv.WaitHTTP(t, p, "http://"+testenv.Addr(port)+"/-/ready", 30*time.Second)

	waitFor(t, func() bool { m := es.messages(); return m["before"] && m["after"] })
	require.Len(t, es.messages(), 2)
	// The batch's good records may be written before the refused one's
	// dead letter is acknowledged (the batch is bisected); its offset is
	// marked only after both, so wait for the dead letter.
	var dl []*sarama.ConsumerMessage
	waitFor(t, func() bool { dl = testenv.ReadTopic(t, k.Addr, "tributary.dlq"); return len(dl) > 0 })
	require.Len(t, dl, 1)
	require.Equal(t, "elasticsearch", testenv.Header(dl[0], record.HeaderDLQSink))
	require.Equal(t, "1", testenv.Header(dl[0], record.HeaderDLQOffset))
	require.Contains(t, testenv.Header(dl[0], record.HeaderDLQReason), "document_parsing_exception")
	require.True(t, bytes.Equal(dl[0].Key, []byte("es")))
}
