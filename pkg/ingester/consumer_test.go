package ingester

import (
	"bytes"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
)

// A record in a batch must not point into sarama's fetch response, or it
// keeps the whole response (every partition's data) alive.
func TestDetachCopiesOutOfTheFetchBuffer(t *testing.T) {
	resp := []byte("keyVALUEh1v1h2")
	m := &sarama.ConsumerMessage{
		Topic: "t", Partition: 3, Offset: 42,
		Key: resp[0:3], Value: resp[3:8],
		Headers: []*sarama.RecordHeader{
			{Key: resp[8:10], Value: resp[10:12]},
			nil,
			{Key: resp[12:14], Value: nil},
		},
	}
	r := detach(m)
	want := recordOf(m)
	want.Headers = []*sarama.RecordHeader{m.Headers[0], m.Headers[2]}
	require.Equal(t, want, r)

	for i := range resp {
		resp[i] = 'x'
	}
	require.Equal(t, []byte("key"), r.Key)
	require.Equal(t, []byte("VALUE"), r.Value)
	require.Equal(t, []byte("h1"), r.Headers[0].Key)
	require.Equal(t, []byte("v1"), r.Headers[0].Value)
	require.Equal(t, []byte("h2"), r.Headers[1].Key)
	require.Nil(t, r.Headers[1].Value)

	// Appending to one field must not overwrite the next.
	_ = append(r.Key, "zzzzz"...)
	require.True(t, bytes.Equal(r.Value, []byte("VALUE")))
}
