package ingester

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/record"
)

func dlqRun(t *testing.T, addr string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	args = append(args[:1:1], append([]string{"-kafka.brokers=" + addr, "-topic=" + testDLQ}, args[1:]...)...)
	require.NoError(t, DLQCommand(context.Background(), args, &out), "dlq %v", args)
	return out.String()
}

func lines(s, prefix string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// recordLines are the lines of "dlq list" that describe a dead letter.
func recordLines(out string) []string {
	return slices.DeleteFunc(strings.Split(out, "\n"), func(l string) bool { return !strings.Contains(l, " sink=") })
}

// replayedTo is where "dlq replay" says it wrote each record, sorted.
func replayedTo(out string) []string {
	var to []string
	for _, l := range lines(out, "replayed ") {
		_, after, _ := strings.Cut(l, " to ")
		to = append(to, after)
	}
	slices.Sort(to)
	return to
}

func highWater(t *testing.T, addr, topic string, p int32) int64 {
	t.Helper()
	client, err := sarama.NewClient([]string{addr}, sarama.NewConfig())
	require.NoError(t, err)
	defer client.Close()
	o, err := client.GetOffset(topic, p, sarama.OffsetNewest)
	require.NoError(t, err)
	return o
}

func without(s []int64, drop ...int64) []int64 {
	return slices.DeleteFunc(slices.Clone(s), func(o int64) bool { return slices.Contains(drop, o) })
}

// Records a sink refuses are dead-lettered; "dlq list" selects them by
// reason, sink and time; a dry run writes nothing; "dlq replay" puts them
// back on their original partition with their original headers, the now
// healthy sink writes each exactly once, and a replay run again (with
// other filters) replays only what was not replayed before.
func TestDLQListAndReplay(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 2)
	produce(t, k.Addr, 0, 10)
	produce(t, k.Addr, 1, 10)
	sink := newRecorder()
	refused := map[[2]int64]string{{0, 3}: "400 Bad Request: out of order sample", {0, 7}: "400 Bad Request: out of order sample", {1, 5}: "400 Bad Request: too old"}
	sink.setFail(func(recs []Record) error {
		for _, r := range recs {
			if reason, ok := refused[[2]int64{int64(r.Partition), r.Offset}]; ok {
				return Permanent(errors.New(reason))
			}
		}
		return nil
	})
	start(t, k.Addr, testConfig("dlqtool"), sink, dlqProducer(t, k.Addr), 0)
	waitWritten(t, sink, 0, without(seq(0, 10), 3, 7))
	waitWritten(t, sink, 1, without(seq(0, 10), 5))
	waitCommitted(t, k.Addr, "dlqtool", 0, 10)
	waitCommitted(t, k.Addr, "dlqtool", 1, 10)
	require.Len(t, testenv.ReadTopic(t, k.Addr, testDLQ), 3)

	out := dlqRun(t, k.Addr, "list")
	require.Len(t, recordLines(out), 3, out)
	require.Contains(t, out, "sink=test cluster=\"c\" from=tributary.metrics/0@3 bytes=3 replayed=no reason=\"400 Bad Request: out of order sample\"")
	require.Contains(t, out, "3 dead letters, 0 of them replayed")
	require.Contains(t, out, `by reason: "400 Bad Request: out of order sample"=2 "400 Bad Request: too old"=1`)
	require.Len(t, recordLines(dlqRun(t, k.Addr, "list", "-reason=out of order")), 2)
	require.Contains(t, dlqRun(t, k.Addr, "list", "-sink=loki"), "0 dead letters")
	require.Contains(t, dlqRun(t, k.Addr, "list", "-cluster=c", "-since=1h"), "3 dead letters")
	require.Contains(t, dlqRun(t, k.Addr, "list", "-until=1h"), "0 dead letters")

	// A dry run writes nothing.
	out = dlqRun(t, k.Addr, "replay", "-dry-run")
	require.Len(t, lines(out, "would replay"), 3, out)
	require.Equal(t, int64(10), highWater(t, k.Addr, testTopic, 0))
	require.Equal(t, int64(10), highWater(t, k.Addr, testTopic, 1))
	require.Len(t, testenv.ReadTopic(t, k.Addr, testDLQ), 3)

	// The cause is fixed; replay one reason first.
	sink.setFail(nil)
	out = dlqRun(t, k.Addr, "replay", "-reason=out of order")
	require.Equal(t, []string{"tributary.metrics/0@10", "tributary.metrics/0@11"}, replayedTo(out), out)
	require.Contains(t, out, "2 dead letters replayed, 0 already replayed before")
	// Then everything: only the one left is replayed.
	out = dlqRun(t, k.Addr, "replay")
	require.Equal(t, []string{"tributary.metrics/1@10"}, replayedTo(out), out)
	require.Contains(t, out, "1 dead letters replayed, 2 already replayed before")
	// And once more: nothing.
	out = dlqRun(t, k.Addr, "replay")
	require.Empty(t, lines(out, "replayed "), out)
	require.Contains(t, out, "0 dead letters replayed, 3 already replayed before")
	require.Equal(t, int64(12), highWater(t, k.Addr, testTopic, 0))
	require.Equal(t, int64(11), highWater(t, k.Addr, testTopic, 1))
	require.Contains(t, dlqRun(t, k.Addr, "list"), "3 dead letters, 3 of them replayed")

	// The replayed records are the originals, without the dead-letter
	// headers, on their original partitions.
	var replayed []string
	for _, m := range testenv.ReadTopic(t, k.Addr, testTopic) {
		if m.Offset < 10 {
			continue
		}
		replayed = append(replayed, fmt.Sprintf("%d@%d=%s", m.Partition, m.Offset, m.Value))
		env, err := record.Parse(m.Headers)
		require.NoError(t, err)
		require.Equal(t, "c", env.GetCluster())
		for _, h := range m.Headers {
			require.False(t, strings.HasPrefix(string(h.Key), "tributary-dlq-"), "replayed with header %s", h.Key)
		}
	}
	slices.Sort(replayed)
	require.Equal(t, []string{"0@10=0/3", "0@11=0/7", "1@10=1/5"}, replayed)

	// The healthy sink writes each replayed record once.
	waitWritten(t, sink, 0, append(without(seq(0, 10), 3, 7), 10, 11))
	waitWritten(t, sink, 1, append(without(seq(0, 10), 5), 10))
	waitCommitted(t, k.Addr, "dlqtool", 0, 12)
	waitCommitted(t, k.Addr, "dlqtool", 1, 11)
	require.Len(t, testenv.ReadTopic(t, k.Addr, testDLQ), 3+3, "3 dead letters and 3 markers, nothing dead-lettered again")
}

func TestDLQFilter(t *testing.T) {
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	d := DeadLetter{Time: at, Sink: "loki", Cluster: "eu-1", Reason: "400 Bad Request: entry too far behind"}
	for _, tc := range []struct {
		f    DLQFilter
		want bool
	}{
		{DLQFilter{}, true},
		{DLQFilter{Reason: "too far behind", Sink: "loki", Cluster: "eu-1"}, true},
		{DLQFilter{Reason: "out of order"}, false},
		{DLQFilter{Sink: "prometheus"}, false},
		{DLQFilter{Cluster: "eu"}, false},
		{DLQFilter{Since: at}, true},
		{DLQFilter{Since: at.Add(time.Nanosecond)}, false},
		{DLQFilter{Until: at}, false},
		{DLQFilter{Until: at.Add(time.Second)}, true},
	} {
		require.Equal(t, tc.want, tc.f.match(d), "%+v", tc.f)
	}
}

func TestDLQCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage: ingester dlq list|replay"},
		{[]string{"purge"}, "usage: ingester dlq list|replay"},
		{[]string{"list", "-since=yesterday"}, `-since="yesterday"`},
		{[]string{"replay", "-kafka.sasl.mechanism=GSSAPI"}, "kafka.sasl.mechanism"},
		{[]string{"list", "-kafka.sasl.mechanism=PLAIN", "-kafka.sasl.username=u", "-kafka.sasl.password-file=/nonexistent"}, "kafka.sasl.password-file"},
	} {
		err := DLQCommand(context.Background(), tc.args, &bytes.Buffer{})
		require.ErrorContains(t, err, tc.want, "%v", tc.args)
	}
}

// Dead-letter headers come from Kafka: parsing must not panic, and what it
// accepts is a complete dead letter or a marker.
func FuzzParseDeadLetter(f *testing.F) {
	f.Add("tributary.metrics", "3", "42", "", "c")
	f.Add("", "", "", "0/7", "")
	f.Add("t", "-1", "x", "1/", "\xff")
	f.Fuzz(func(t *testing.T, topic, part, offset, marker, cluster string) {
		var hs []*sarama.RecordHeader
		add := func(k, v string) {
			if v != "" {
				hs = append(hs, &sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
			}
		}
		add(record.HeaderCluster, cluster)
		add(record.HeaderDLQTopic, topic)
		add(record.HeaderDLQPartition, part)
		add(record.HeaderDLQOffset, offset)
		add(HeaderReplayed, marker)
		hs = append(hs, nil)
		d, _, ok, err := parseDeadLetter(&sarama.ConsumerMessage{Headers: hs})
		if ok && (err != nil || d.Topic == "" || d.OrigPartition < 0 || d.OrigOffset < 0) {
			t.Fatalf("accepted an incomplete dead letter: %+v, %v", d, err)
		}
		for _, h := range d.Headers {
			if isDeadLetterHeader(string(h.Key)) {
				t.Fatalf("kept dead-letter header %s", h.Key)
			}
		}
	})
}
