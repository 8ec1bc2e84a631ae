package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/tributary-io/tributary/pkg/kafka"
	"github.com/tributary-io/tributary/pkg/record"
)

// consume reads a topic from the oldest offset to the end it had when the
// run started, with a bare sarama consumer group configured as the
// ingester's (pkg/kafka defaults, oldest offset first, 1 s processing time)
// that only reads each record's item count: the rate any consumer of this
// client and broker can reach, the baseline for the ingester.
func consume(ctx context.Context, cfg Config, pids []int, log *slog.Logger) (*Result, error) {
	kc := kafka.Config{Brokers: cfg.Target, ClientID: "tributary-loadgen", Version: "2.8.0", Timeout: 10 * time.Second}
	if err := kc.Validate(); err != nil {
		return nil, err
	}
	sc, err := kc.Sarama()
	if err != nil {
		return nil, err
	}
	sc.Consumer.Return.Errors = true
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.MaxProcessingTime = time.Second
	client, err := sarama.NewClient(kc.BrokerList(), sc)
	if err != nil {
		return nil, fmt.Errorf("connect to kafka %s: %w", cfg.Target, err)
	}
	defer client.Close()
	parts, err := client.Partitions(cfg.Topic)
	if err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", cfg.Topic, err)
	}
	h := &drainHandler{end: map[int32]int64{}, next: map[int32]*atomic.Int64{}}
	var total int64
	for _, p := range parts {
		newest, err := client.GetOffset(cfg.Topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, fmt.Errorf("end offset of %s/%d: %w", cfg.Topic, p, err)
		}
		oldest, err := client.GetOffset(cfg.Topic, p, sarama.OffsetOldest)
		if err != nil {
			return nil, fmt.Errorf("start offset of %s/%d: %w", cfg.Topic, p, err)
		}
		if newest > oldest {
			h.end[p] = newest
			h.next[p] = new(atomic.Int64)
			total += newest - oldest
		}
	}
	log.Info("consuming to the end", "topic", cfg.Topic, "group", cfg.Group, "records", total, "partitions", len(h.end))
	h.remaining.Store(int32(len(h.end)))

	watch := newProcWatcher(append([]int{os.Getpid()}, pids...))
	watch.Begin()
	cctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	h.finished = cancel
	if len(h.end) == 0 {
		cancel()
	}
	group, err := sarama.NewConsumerGroupFromClient(cfg.Group, client)
	if err != nil {
		return nil, fmt.Errorf("consumer group %s: %w", cfg.Group, err)
	}
	go func() {
		for err := range group.Errors() {
			log.Warn("consumer group error", "err", err)
		}
	}()
	stopProgress := reportProgress(cfg, &h.prog, log)
	for cctx.Err() == nil {
		if err := group.Consume(cctx, []string{cfg.Topic}, h); err != nil && cctx.Err() == nil {
			if errors.Is(err, sarama.ErrClosedConsumerGroup) {
				break
			}
			log.Warn("consume", "err", err)
			time.Sleep(100 * time.Millisecond)
		}
	}
	stopProgress()
	_ = group.Close()

	procs := watch.End()
	res := &Result{
		Mode: cfg.Mode, Target: cfg.Target, Concurrency: 1, StatusCodes: map[string]int64{},
		PIDs: map[string]ProcStats{}, Self: procs[0], Complete: h.remaining.Load() == 0,
		Records: h.records.Load(), Samples: h.items.Load(),
	}
	for i, pid := range pids {
		res.PIDs[strconv.Itoa(pid)] = procs[i+1]
	}
	first, last := h.first.Load(), h.last.Load()
	if !res.Complete {
		last = time.Now().UnixNano()
		log.Warn("did not reach the end of the topic in time", "read", res.Records, "of", total)
	}
	if first > 0 && last > first {
		res.DurationS = float64(last-first) / 1e9
		res.RecordsPerSec = float64(res.Records) / res.DurationS
		res.SamplesPerSec = float64(res.Samples) / res.DurationS
		res.BodyBytesPerSec = float64(h.bytes.Load()) / res.DurationS
		res.BytesPerSec = res.BodyBytesPerSec
	}
	return res, nil
}

// drainHandler counts records until every partition reached its end offset.
// The window runs from the first record to the last one.
type drainHandler struct {
	// end and next are read-only maps while consuming; next holds the next
	// offset to count, so that records read again after a rejoin (nothing
	// is committed) are not counted twice.
	end      map[int32]int64
	next     map[int32]*atomic.Int64
	finished func()

	remaining             atomic.Int32
	records, items, bytes atomic.Int64
	first, last           atomic.Int64 // unix ns
	prog                  progress
}

func (h *drainHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *drainHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *drainHandler) ConsumeClaim(_ sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	end, ok := h.end[claim.Partition()]
	next := h.next[claim.Partition()]
	for msg := range claim.Messages() {
		if !ok || msg.Offset >= end || msg.Offset < next.Load() {
			continue // written after the run started, or counted before
		}
		next.Store(msg.Offset + 1)
		h.first.CompareAndSwap(0, time.Now().UnixNano())
		items := int64(itemsOf(msg))
		h.records.Add(1)
		h.items.Add(items)
		h.bytes.Add(int64(len(msg.Value)))
		h.prog.requests.Add(1)
		h.prog.items.Add(items)
		if msg.Offset == end-1 {
			now := time.Now().UnixNano()
			for old := h.last.Load(); old < now && !h.last.CompareAndSwap(old, now); old = h.last.Load() {
			}
			if h.remaining.Add(-1) == 0 {
				h.finished()
			}
		}
	}
	return nil
}

// itemsOf reads the envelope's item count (samples, entries) of a record.
func itemsOf(msg *sarama.ConsumerMessage) uint64 {
	for _, h := range msg.Headers {
		if h != nil && string(h.Key) == record.HeaderItems {
			n, _ := strconv.ParseUint(string(h.Value), 10, 64)
			return n
		}
	}
	return 0
}
