package record

import (
	"errors"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

func ptrs(hs []sarama.RecordHeader) []*sarama.RecordHeader {
	out := make([]*sarama.RecordHeader, len(hs))
	for i := range hs {
		out[i] = &hs[i]
	}
	return out
}

func TestHeadersRoundTrip(t *testing.T) {
	in := &recordpb.Envelope{
		SchemaVersion:      SchemaVersion,
		Signal:             recordpb.Signal_SIGNAL_METRICS,
		Cluster:            "prod-eu-1",
		Tenant:             "team-a",
		ReceivedAtUnixNano: time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC).UnixNano(),
		ContentType:        ContentTypeWriteRequest,
		ContentEncoding:    EncodingSnappy,
		Items:              2000,
	}
	out, err := Parse(ptrs(Headers(in)))
	require.NoError(t, err)
	require.True(t, proto.Equal(in, out), "got %v", out)
}

func TestParseRefuses(t *testing.T) {
	good := Headers(&recordpb.Envelope{SchemaVersion: 1, Signal: recordpb.Signal_SIGNAL_LOGS, Cluster: "c"})
	set := func(key, val string) []*sarama.RecordHeader {
		hs := append([]sarama.RecordHeader(nil), good...)
		for i := range hs {
			if string(hs[i].Key) == key {
				hs[i].Value = []byte(val)
			}
		}
		return ptrs(hs)
	}
	for _, tc := range []struct {
		name string
		hs   []*sarama.RecordHeader
		want error
	}{
		{"no headers", nil, ErrBadEnvelope},
		{"future version", set(HeaderSchema, "2"), ErrUnknownVersion},
		{"garbage version", set(HeaderSchema, "x"), ErrBadEnvelope},
		{"unknown signal", set(HeaderSignal, "traces"), ErrBadEnvelope},
		{"bad items", set(HeaderItems, "-1"), ErrBadEnvelope},
		{"bad time", set(HeaderReceivedAt, "yesterday"), ErrBadEnvelope},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.hs)
			require.True(t, errors.Is(err, tc.want), "got %v", err)
		})
	}
}

func TestDeadLetterHeaders(t *testing.T) {
	orig := ptrs(Headers(&recordpb.Envelope{SchemaVersion: 1, Signal: recordpb.Signal_SIGNAL_METRICS, Cluster: "c"}))
	hs := DeadLetterHeaders(orig, &recordpb.DeadLetter{Reason: "400 bad", Sink: "prometheus", Topic: "tributary.metrics", Partition: 3, Offset: 42})
	got := map[string]string{}
	for _, h := range hs {
		got[string(h.Key)] = string(h.Value)
	}
	require.Equal(t, "c", got[HeaderCluster])
	require.Equal(t, "400 bad", got[HeaderDLQReason])
	require.Equal(t, "prometheus", got[HeaderDLQSink])
	require.Equal(t, "3", got[HeaderDLQPartition])
	require.Equal(t, "42", got[HeaderDLQOffset])
}
