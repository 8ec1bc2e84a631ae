package elasticsearch

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/pkg/ingester"
)

// make bench's direct client must write what the sink writes: the same
// actions, ids, indices and documents, the service documents once, in
// bodies no larger than flush.bytes.
func TestJaegerBulkBodiesAreWhatTheSinkSends(t *testing.T) {
	f, srv := newFakeES(t)
	cfg := jaegerTestConfig(srv.URL)
	cfg.IndexPrefix = "prod"
	cfg.FlushBytes = 2000 // a few documents a request
	recs := []ingester.Record{spanRecord(t, 1, "eu-1", testTrace()), spanRecord(t, 2, "eu-2", testTrace())}
	s := newJaegerSink(t, cfg)
	for _, r := range recs { // one record a write, as batches of one
		require.NoError(t, s.Write(context.Background(), []ingester.Record{r}))
	}
	fromSink := sentOps(f)

	bodies, docs, err := JaegerBulkBodies(cfg, recs, 1)
	require.NoError(t, err)
	require.Equal(t, len(fromSink), docs)
	require.Greater(t, len(bodies), 1, "split at flush.bytes")
	var fromBodies []bulkOp
	for _, b := range bodies {
		require.True(t, len(b) <= cfg.FlushBytes || bytes.Count(b, []byte("\n")) == 2, "body of %d bytes over flush.bytes %d", len(b), cfg.FlushBytes)
		req := httptest.NewRequest(http.MethodPost, "/_bulk", bytes.NewReader(b))
		fromBodies = append(fromBodies, readBulk(t, req)...)
	}
	require.ElementsMatch(t, fromSink, fromBodies)
	// The two records are the same trace of two clusters: four span
	// documents, and the two service documents only once.
	require.Len(t, fromBodies, 6)
}
