package ingester

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tributary-io/tributary/pkg/kafka"
)

// dlqConfig is the configuration of "ingester dlq list" and "replay".
type dlqConfig struct {
	Kafka    kafka.Config
	Producer kafka.ProducerConfig
	Topic    string
	Filter   DLQFilter
	since    string
	until    string
	DryRun   bool
}

func (c *dlqConfig) registerFlags(fs *flag.FlagSet, replay bool) {
	c.Kafka.RegisterFlags("kafka.", fs)
	fs.StringVar(&c.Topic, "topic", "tributary.dlq", "Dead-letter topic.")
	fs.StringVar(&c.Filter.Reason, "reason", "", "Only dead letters whose reason contains this text.")
	fs.StringVar(&c.Filter.Sink, "sink", "", "Only dead letters of this sink (prometheus, loki, elasticsearch, jaeger, spanmetrics, ...).")
	fs.StringVar(&c.Filter.Cluster, "cluster", "", "Only dead letters of this cluster.")
	fs.StringVar(&c.since, "since", "", "Only dead letters written at or after this time: RFC 3339 (2026-11-29T10:00:00Z) or a duration back from now (2h).")
	fs.StringVar(&c.until, "until", "", "Only dead letters written before this time: RFC 3339 or a duration back from now.")
	if replay {
		fs.BoolVar(&c.DryRun, "dry-run", false, "Print what would be replayed; write nothing.")
		fs.DurationVar(&c.Producer.AckTimeout, "kafka.ack-timeout", 30*time.Second, "Longest wait for Kafka to acknowledge a batch of replayed records.")
		// The gateway's own default: a dead letter is a record it wrote.
		fs.IntVar(&c.Producer.MaxMessageBytes, "kafka.max-message-bytes", 1000000, "Producer's largest message (value + key + headers).")
	}
}

func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	return time.Parse(time.RFC3339, s)
}

func (c *dlqConfig) validate(now time.Time) error {
	var err error
	if c.Filter.Since, err = parseWhen(c.since, now); err != nil {
		return fmt.Errorf("-since=%q: want RFC 3339 or a duration", c.since)
	}
	if c.Filter.Until, err = parseWhen(c.until, now); err != nil {
		return fmt.Errorf("-until=%q: want RFC 3339 or a duration", c.until)
	}
	if c.Topic == "" {
		return errors.New("-topic is empty")
	}
	return c.Kafka.Validate()
}

// DLQCommand is "ingester dlq list|replay [flags]": list prints the
// dead letters the filters select and a summary; replay puts them back on
// their original topics, once.
func DLQCommand(ctx context.Context, args []string, w io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		return errors.New("usage: ingester dlq list|replay [flags] (-help for the flags)")
	}
	replay := args[0] == "replay"
	var cfg dlqConfig
	fs := flag.NewFlagSet("dlq "+args[0], flag.ContinueOnError)
	cfg.registerFlags(fs, replay)
	fs.Usage = func() {
		if replay {
			fmt.Fprintln(fs.Output(), "Usage: ingester dlq replay [flags]\nProduces the selected dead letters back to their original topic and partition, with their original key and headers, and marks each in the dead-letter topic so that no later replay repeats it. Fix the cause first.")
		} else {
			fmt.Fprintln(fs.Output(), "Usage: ingester dlq list [flags]\nPrints the selected dead letters, one per line, and a count by sink, cluster and reason.")
		}
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if err := cfg.validate(time.Now()); err != nil {
		return err
	}
	ds, err := ReadDeadLetters(ctx, cfg.Kafka, cfg.Topic, cfg.Filter)
	if err != nil {
		return err
	}
	if !replay {
		for _, d := range ds {
			fmt.Fprintln(w, formatDeadLetter(d))
		}
		printSummary(w, ds)
		return nil
	}
	var todo, skipped int
	for _, d := range ds {
		if d.Replayed {
			skipped++
			continue
		}
		todo++
		if cfg.DryRun {
			fmt.Fprintf(w, "would replay %s\n", formatDeadLetter(d))
		}
	}
	if cfg.DryRun {
		fmt.Fprintf(w, "dry run: %d dead letters would be replayed, %d already replayed\n", todo, skipped)
		return nil
	}
	r := &Replayer{Kafka: cfg.Kafka, Producer: cfg.Producer, Topic: cfg.Topic, BatchRecords: 100,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	replayed := 0
	err = r.Replay(ctx, ds, func(res ReplayResult) {
		replayed++
		fmt.Fprintf(w, "replayed %d@%d to %s/%d@%d\n", res.Partition, res.Offset, res.ToTopic, res.ToPartition, res.ToOffset)
	})
	fmt.Fprintf(w, "%d dead letters replayed, %d already replayed before\n", replayed, skipped)
	return err
}

// formatDeadLetter is one line: position, time, sink, cluster, original
// position, size, replay state and reason (last: it holds spaces).
func formatDeadLetter(d DeadLetter) string {
	state := "no"
	if d.Replayed {
		state = "yes"
	}
	return fmt.Sprintf("%d@%d %s sink=%s cluster=%s from=%s/%d@%d bytes=%d replayed=%s reason=%s",
		d.Partition, d.Offset, d.Time.UTC().Format(time.RFC3339), d.Sink, strconv.Quote(d.Cluster),
		d.Topic, d.OrigPartition, d.OrigOffset, len(d.Value), state, strconv.Quote(d.Reason))
}

// summaryReasonLen cuts reasons for the summary: they often end in
// details (a sample's timestamp, a document id) that would make each one
// distinct.
const summaryReasonLen = 80

func printSummary(w io.Writer, ds []DeadLetter) {
	replayed := 0
	bySink, byCluster, byReason := map[string]int{}, map[string]int{}, map[string]int{}
	for _, d := range ds {
		if d.Replayed {
			replayed++
		}
		bySink[d.Sink]++
		byCluster[d.Cluster]++
		reason := d.Reason
		if r := []rune(reason); len(r) > summaryReasonLen {
			reason = string(r[:summaryReasonLen]) + "..."
		}
		byReason[reason]++
	}
	fmt.Fprintf(w, "%d dead letters, %d of them replayed\n", len(ds), replayed)
	for _, g := range []struct {
		name   string
		counts map[string]int
	}{{"sink", bySink}, {"cluster", byCluster}, {"reason", byReason}} {
		keys := slices.SortedFunc(maps.Keys(g.counts), func(a, b string) int {
			return cmp.Or(cmp.Compare(g.counts[b], g.counts[a]), cmp.Compare(a, b))
		})
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%d", strconv.Quote(k), g.counts[k]))
		}
		fmt.Fprintf(w, "by %s: %s\n", g.name, strings.Join(parts, " "))
	}
}
