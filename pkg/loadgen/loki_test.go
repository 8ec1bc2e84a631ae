package loadgen

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/pkg/lokipush"
)

var testStreams = StreamConfig{Streams: 60, StreamsPerRequest: 20, EntriesPerRequest: 250, LineBytes: 180, Clusters: 2}

// entry is one log entry as decoded from either format.
type entry struct {
	stream string
	ns     int64
	line   string
}

func decodeProto(t *testing.T, b *Body) []entry {
	t.Helper()
	raw, err := snappy.Decode(nil, b.Data)
	require.NoError(t, err)
	var req push.PushRequest
	require.NoError(t, req.Unmarshal(raw))
	var out []entry
	for _, s := range req.Streams {
		for _, e := range s.Entries {
			out = append(out, entry{s.Labels, e.Timestamp.UnixNano(), e.Line})
		}
	}
	return out
}

func decodeJSON(t *testing.T, b *Body) []entry {
	t.Helper()
	var req struct {
		Streams []struct {
			Stream map[string]string `json:"stream"`
			Values [][]string        `json:"values"`
		} `json:"streams"`
	}
	require.NoError(t, json.Unmarshal(b.Data, &req))
	var out []entry
	for _, s := range req.Streams {
		require.Equal(t, b.Cluster, s.Stream["cluster"])
		key, _ := json.Marshal(s.Stream) // sorted keys
		for _, v := range s.Values {
			require.Len(t, v, 2)
			ns, err := strconv.ParseInt(v[0], 10, 64)
			require.NoError(t, err)
			out = append(out, entry{string(key), ns, v[1]})
		}
	}
	return out
}

func TestLokiBodies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		build  func(StreamConfig) ([]*Body, error)
		decode func(*testing.T, *Body) []entry
		ctype  string
	}{
		{"protobuf", LokiProtoBodies, decodeProto, "application/x-protobuf"},
		{"json", LokiJSONBodies, decodeJSON, "application/json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bodies, err := tc.build(testStreams)
			require.NoError(t, err)
			require.Len(t, bodies, 3)
			last := map[string]int64{}
			streams := map[string]bool{}
			for _, b := range bodies {
				require.Equal(t, tc.ctype, b.ContentType)
				entries := tc.decode(t, b)
				require.Len(t, entries, testStreams.EntriesPerRequest)
				require.Equal(t, testStreams.EntriesPerRequest, b.Items)
				require.Equal(t, testStreams.EntriesPerRequest*testStreams.LineBytes, b.LineBytes)
				for _, e := range entries {
					require.Len(t, e.line, testStreams.LineBytes)
					streams[e.stream] = true
				}
				// Strictly increasing per stream, within a body and across
				// its sends, whatever the clock says.
				now := time.Now()
				for round, at := range []time.Time{now, now, now.Add(-time.Hour), now.Add(time.Millisecond)} {
					b.Stamp(at)
					for _, e := range tc.decode(t, b) {
						require.Greater(t, e.ns, last[e.stream], "round %d stream %s", round, e.stream)
						last[e.stream] = e.ns
					}
				}
			}
			require.Len(t, streams, testStreams.Streams)
		})
	}
}

// The gateway accepts both formats and forwards the protobuf bodies as
// received.
func TestLokiBodiesAcceptedByGateway(t *testing.T) {
	lim := lokipush.DefaultLimits()
	proto, err := LokiProtoBodies(testStreams)
	require.NoError(t, err)
	for _, b := range proto {
		batches, err := lokipush.Parse(b.Data, b.ContentType, b.Encoding, lim, lokipush.Options{})
		require.NoError(t, err)
		require.Len(t, batches, 1)
		require.Equal(t, b.Cluster, batches[0].Cluster)
		require.Equal(t, b.LineBytes, batches[0].LineBytes)
		require.Same(t, &b.Data[0], &batches[0].Value[0], "forwarded byte for byte")
	}
	js, err := LokiJSONBodies(testStreams)
	require.NoError(t, err)
	for _, b := range js {
		batches, err := lokipush.Parse(b.Data, b.ContentType, b.Encoding, lim, lokipush.Options{})
		require.NoError(t, err)
		require.Len(t, batches, 1)
		require.Equal(t, b.Items, batches[0].Entries)
		require.Equal(t, b.LineBytes, batches[0].LineBytes)
	}
}
