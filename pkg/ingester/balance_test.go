package ingester

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/kafka"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// startWithStrategy is start with a balance strategy ("" is the default).
func startWithStrategy(t *testing.T, addr string, cfg Config, strategy string) *running {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	c, err := NewConsumer(Params{Config: cfg, Kafka: testKafka(addr), Group: kafka.ConsumerConfig{BalanceStrategy: strategy},
		Name: "test", Signal: recordpb.Signal_SIGNAL_METRICS, Sink: newRecorder(), DLQ: dlqProducer(t, addr), Metrics: m, Log: quiet})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Consumer: c, m: m, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		_ = c.Run(ctx)
	}()
	t.Cleanup(r.stop)
	return r
}

// held is the partitions a consumer holds now, sorted.
func (r *running) held() []int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int32
	for p := range r.parts {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// waitSpread waits until the consumers hold every one of n partitions,
// each exactly per, and returns the owner of each partition.
func waitSpread(t *testing.T, cs []*running, n, per int) map[int32]int {
	t.Helper()
	var owner map[int32]int
	testenv.Eventually(t, 60*time.Second, func() error {
		owner = map[int32]int{}
		var counts []int
		for i, c := range cs {
			h := c.held()
			counts = append(counts, len(h))
			for _, p := range h {
				owner[p] = i
			}
		}
		for _, got := range counts {
			if got != per {
				return fmt.Errorf("partitions held per consumer %v, want %d each", counts, per)
			}
		}
		if len(owner) != n {
			return fmt.Errorf("%d distinct partitions held, want %d", len(owner), n)
		}
		return nil
	})
	return owner
}

// With the default (sticky) strategy 3 ingesters share 12 partitions 4
// each, and a 4th joining takes 3 of them while the others keep the rest:
// only the partitions that must move do (range would move 4 to 6 of them
// and shift runs of consecutive partitions between members).
func TestConsumerStickyAssignment(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 12, testenv.FastGroups()...)
	cfg := testConfig("sticky")
	var cs []*running
	for range 3 {
		cs = append(cs, startWithStrategy(t, k.Addr, cfg, ""))
	}
	before := waitSpread(t, cs, 12, 4)
	cs = append(cs, startWithStrategy(t, k.Addr, cfg, ""))
	after := waitSpread(t, cs, 12, 3)
	var moved []int32
	for p, o := range after {
		if before[p] != o {
			moved = append(moved, p)
		}
	}
	slices.Sort(moved)
	require.Len(t, moved, 3, "partitions that changed owner: %v (before %v, after %v)", moved, before, after)
	for _, p := range moved {
		require.Equal(t, 3, after[p], "partition %d moved between old members", p)
	}
}

func TestConsumerBalanceStrategyFlag(t *testing.T) {
	_, err := NewConsumer(Params{Config: testConfig("x"), Kafka: testKafka("127.0.0.1:1"),
		Group: kafka.ConsumerConfig{BalanceStrategy: "cooperative"}, Name: "test", Metrics: NewMetrics(prometheus.NewRegistry()), Log: quiet})
	require.ErrorContains(t, err, "kafka.consumer.balance-strategy")
}
