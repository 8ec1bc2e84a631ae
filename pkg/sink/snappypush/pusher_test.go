package snappypush

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tributary-io/tributary/pkg/ingester"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// message is a protobuf message of fields repeated field 1 (as a
// request's series or streams), each size bytes long in total.
func message(fields, size int, fill byte) []byte {
	var b []byte
	for range fields {
		// tag (1 byte) + length varint (2 bytes for 128..16383) + payload
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, bytes.Repeat([]byte{fill}, size-3))
	}
	return b
}

// capture is a server that records the decoded body of every request.
type capture struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (c *capture) server(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		raw, err := snappy.Decode(nil, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.bodies = append(c.bodies, raw)
		c.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestWriteSplitsRequests: no request decodes to more than
// MaxRequestDecodedBytes (plus the per-item overhead), and the requests
// together carry every record's content, in order.
func TestWriteSplitsRequests(t *testing.T) {
	const limit = 10_000
	rec := func(offset int64, raw []byte, items uint64) ingester.Record {
		return ingester.Record{Offset: offset, Value: snappy.Encode(nil, raw), Envelope: &recordpb.Envelope{Items: items}}
	}
	tests := []struct {
		name     string
		overhead int
		records  [][]byte
		items    uint64
		want     int // requests
	}{
		{name: "under the limit: one request", records: [][]byte{message(10, 400, 'a'), message(10, 400, 'b')}, want: 1},
		{name: "exactly the limit: one request", records: [][]byte{message(10, 500, 'a'), message(10, 500, 'b')}, want: 1},
		{name: "batch over the limit: cut between records", records: [][]byte{message(10, 400, 'a'), message(10, 400, 'b'), message(10, 400, 'c'), message(1, 200, 'd')}, want: 2},
		{name: "one record over the limit: cut at its fields", records: [][]byte{message(50, 1000, 'a')}, want: 5},
		{name: "small, large, small", records: [][]byte{message(2, 1000, 'a'), message(25, 1000, 'b'), message(2, 1000, 'c')}, want: 5},
		{name: "a field larger than the limit goes alone", records: [][]byte{append(message(1, 200, 'a'), message(1, 12_000, 'b')...)}, want: 2},
		// 10 items of 100 bytes count 1000 more per record of 4000 bytes.
		{name: "per-item overhead", overhead: 100, items: 10, records: [][]byte{message(10, 400, 'a'), message(10, 400, 'b'), message(10, 400, 'c')}, want: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c capture
			srv := c.server(t)
			p := New(Config{URL: srv.URL, Timeout: 5 * time.Second, MaxDecodedBytes: 1 << 20, MaxRequestDecodedBytes: limit}, "test push", nil, "", nil)
			p.ItemOverhead = tc.overhead
			var recs []ingester.Record
			var all []byte
			for i, raw := range tc.records {
				recs = append(recs, rec(int64(i), raw, tc.items))
				all = append(all, raw...)
			}
			require.NoError(t, p.Write(context.Background(), recs))
			require.Len(t, c.bodies, tc.want)
			var got []byte
			for _, b := range c.bodies {
				fields := 0
				for rest := b; len(rest) > 0; fields++ {
					_, _, n := protowire.ConsumeField(rest)
					require.Positive(t, n, "each request is a whole message")
					rest = rest[n:]
				}
				if fields > 1 {
					require.LessOrEqual(t, len(b)+tc.overhead*int(tc.items), limit)
				}
				got = append(got, b...)
			}
			require.Equal(t, all, got, "the requests together hold the records, in order")
		})
	}
}

// A corrupt record anywhere in the batch is refused before anything is
// sent, even when the batch would go as several requests.
func TestWriteChecksEveryRecordFirst(t *testing.T) {
	var c capture
	srv := c.server(t)
	p := New(Config{URL: srv.URL, Timeout: 5 * time.Second, MaxDecodedBytes: 1 << 20, MaxRequestDecodedBytes: 1000}, "test push", nil, "", nil)
	good := ingester.Record{Offset: 1, Value: snappy.Encode(nil, message(5, 300, 'a'))}
	bad := ingester.Record{Offset: 2, Value: []byte{0x05, 0xff, 0xff}}
	err := p.Write(context.Background(), []ingester.Record{good, good, bad})
	require.True(t, ingester.IsPermanent(err), "%v", err)
	require.ErrorContains(t, err, "record 2")
	require.Empty(t, c.bodies)

	// A record over the limit whose content is not protobuf cannot be cut.
	junk := ingester.Record{Offset: 3, Value: snappy.Encode(nil, bytes.Repeat([]byte{0xff}, 2000))}
	err = p.Write(context.Background(), []ingester.Record{junk})
	require.True(t, ingester.IsPermanent(err), "%v", err)
	require.ErrorContains(t, err, "record 3")
}
