package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/ingester"
	"github.com/tributary-io/tributary/pkg/kafka"
	"github.com/tributary-io/tributary/pkg/loadgen"
	"github.com/tributary-io/tributary/pkg/record"
	"github.com/tributary-io/tributary/pkg/sink/elasticsearch"
)

// Shape of the spans-sink phase.
const (
	// spansSinkPerSecond × -seconds spans go through each side of each
	// round: ZincSearch indexes ~350 Jaeger span documents per CPU-second
	// (measured in this phase), ~700/s on two idle cores, so a run lasts
	// about 1.5 × -seconds there (minutes on a busy machine).
	spansSinkPerSecond = 1000
	// spansSinkFill is how long the gateway takes the spans in.
	spansSinkFill = 2 * time.Second
	// spansSinkConcurrency and spansSinkBatch shape the direct client:
	// _bulk requests in flight, and records whose documents make one
	// request (2000 documents, ~3.9 MB; the sink's own requests are up to
	// its -jaeger.flush.bytes, 5 MiB, two in flight). ZincSearch indexes
	// from its write-ahead log in the background, and that indexer, not
	// the requests, took the CPU in every run; other shapes were not
	// tried (the shared machine could not tell them apart).
	spansSinkConcurrency = 2
	spansSinkBatch       = 20
)

// spansSinkRound is one round of the phase; a zero value was not measured.
type spansSinkRound struct {
	direct, directZinc                  float64
	ingester, ingesterCPU, ingesterZinc float64
}

// phaseSpansSink compares the ingester's Jaeger Elasticsearch sink with
// a plain bulk client writing the same documents (issue 21: the sink ≥
// 0.8× the direct write). The gateway fills tributary.spans of a devbroker
// with the load tool's OTLP spans; the bench reads the topic back and
// turns it into the exact _bulk bodies the sink sends
// (elasticsearch.JaegerBulkBodies: the sink's conversion, service
// documents once per day, service and operation). Then rounds ×
// (direct client → a fresh ZincSearch, ingester with only the Jaeger sink
// → another fresh one), both with the sink's index templates, until every
// span document is acknowledged; the count in ZincSearch is checked after
// each run. The direct client gets its bodies encoded beforehand: it is
// the server's ceiling, and the ingester pays for consuming and
// converting on the same two cores.
func (b *bench) phaseSpansSink(ctx context.Context, s *scope) {
	want := int64(spansSinkPerSecond * b.cfg.Seconds)
	rounds := 1
	if b.cfg.Seconds >= 6 {
		rounds = 3
	}
	b.log.Info("phase spans-sink: Jaeger ES sink vs. direct _bulk into ZincSearch", "spans", want, "rounds", rounds)
	broker := b.startBroker(s)
	spans := b.fillSpans(ctx, s, broker, want)
	recs, err := readTopic(ctx, broker.Addr, "tributary.spans")
	s.fatalIf(err, "read tributary.spans")
	cfg := spansSinkConfig()
	bodies, docs, err := elasticsearch.JaegerBulkBodies(cfg, recs, spansSinkBatch)
	s.fatalIf(err, "encode the documents")
	spanDocs := 0
	for _, r := range recs {
		spanDocs += int(r.Envelope.GetItems())
	}
	if int64(spanDocs) != spans {
		s.Fatalf("the topic holds %d spans, the gateway acknowledged %d", spanDocs, spans)
	}
	size := 0
	for _, body := range bodies {
		size += len(body)
	}
	b.log.Info("phase spans-sink: topic read", "records", len(recs), "spans", spanDocs, "documents", docs,
		"bulk_requests", len(bodies), "bulk_mb", size>>20)

	var all []spansSinkRound
	for i := 1; i <= rounds && ctx.Err() == nil; i++ {
		var r spansSinkRound
		b.step(ctx, "spans-sink", func(ctx context.Context, s *scope) {
			z := testenv.Zinc(s)
			b.installJaegerTemplates(ctx, s, z)
			smp := startSampler(z.Proc.PID())
			t0 := time.Now()
			sent := make(chan error, 1)
			go func() { sent <- bulkDirect(ctx, z, bodies, spansSinkConcurrency) }()
			took := waitIndexed(ctx, s, z, spanDocs, t0, sent)
			u := smp.end()
			r.direct = float64(spanDocs) / took.Seconds()
			r.directZinc = u[0].cpuSeconds / took.Seconds()
			z.Stop()
		})
		b.step(ctx, "spans-sink", func(ctx context.Context, s *scope) {
			z := testenv.Zinc(s)
			ing := b.startIngester(s, broker.Addr, "-jaeger.addresses="+z.ESURL, "-jaeger.username="+z.User,
				"-jaeger.password="+z.Password, "-jaeger.group=tributary-bench-jaeger-"+strconv.Itoa(i))
			// The clock starts at the first record consumed (after start-up,
			// group join and template install), as the direct client's at
			// its first request.
			t0 := waitConsuming(ctx, s, ing)
			smp := startSampler(ing.PID(), z.Proc.PID())
			took := waitIndexed(ctx, s, z, spanDocs, t0, nil)
			u := smp.end()
			r.ingester = float64(spanDocs) / took.Seconds()
			r.ingesterCPU = u[0].cpuSeconds / took.Seconds()
			r.ingesterZinc = u[1].cpuSeconds / took.Seconds()
			if f, err := scrape(ctx, ing.URL+"/metrics"); err == nil {
				if n := f.sum("tributary_ingester_dlq_records_total", nil); n > 0 {
					s.Fatalf("the ingester dead-lettered %.0f records:\n%s", n, lastLines(ing.Output(), 5))
				}
			}
			stop(ing)
			z.Stop()
		})
		b.log.Info("phase spans-sink: round", "round", i, "direct_spans_per_sec", int(r.direct), "ingester_spans_per_sec", int(r.ingester))
		all = append(all, r)
	}
	var direct, directZinc, ing, ingCPU, ingZinc, ratio []float64
	for _, r := range all {
		if r.direct > 0 {
			direct, directZinc = append(direct, r.direct), append(directZinc, r.directZinc)
		}
		if r.ingester > 0 {
			ing, ingCPU, ingZinc = append(ing, r.ingester), append(ingCPU, r.ingesterCPU), append(ingZinc, r.ingesterZinc)
		}
		if r.direct > 0 && r.ingester > 0 {
			ratio = append(ratio, r.ingester/r.direct)
		}
	}
	b.res["spans_sink_spans"] = float64(spanDocs)
	b.res["spans_sink_rounds"] = float64(len(all))
	b.res.setMedian("spans_sink_direct_per_sec", direct)
	b.res.setMedian("spans_sink_direct_zinc_cpu_cores", directZinc)
	b.res.setMedian("spans_sink_ingester_per_sec", ing)
	b.res.setMedian("spans_sink_ingester_cpu_cores", ingCPU)
	b.res.setMedian("spans_sink_ingester_zinc_cpu_cores", ingZinc)
	b.res.setMedian("spans_sink_ingester_vs_direct", ratio)
	if len(ratio) > 0 {
		b.log.Info("phase spans-sink: ingester / direct per round", "ratios", fmt.Sprint(ratio))
	}
	stop(broker)
}

// spansSinkConfig is the Jaeger sink's configuration with the ingester's
// defaults (the flags' defaults).
func spansSinkConfig() elasticsearch.JaegerConfig {
	var cfg elasticsearch.JaegerConfig
	cfg.RegisterFlags("jaeger.", flag.NewFlagSet("jaeger", flag.ContinueOnError))
	return cfg
}

// fillSpans sends about want spans of the load tool's OTLP gRPC mode
// through a gateway into broker and returns how many it acknowledged.
func (b *bench) fillSpans(ctx context.Context, s *scope, broker *proc, want int64) int64 {
	gw := b.startGateway(s, broker.Addr)
	perRequest := int64(100) // the load tool's -spans-per-request
	rate := float64(want) / float64(perRequest) / spansSinkFill.Seconds()
	res, err := b.load(ctx, "spans-sink-fill", "-mode="+loadgen.ModeOTLPGRPC, "-target="+gw.GRPCAddr,
		"-spans-per-request="+strconv.FormatInt(perRequest, 10), "-rate="+strconv.FormatFloat(rate, 'f', 2, 64),
		"-duration="+spansSinkFill.String())
	s.fatalIf(err, "loadgen otlp-grpc → gateway")
	b.warnNotAcked(res, "gateway")
	stop(gw)
	if res.Spans == 0 {
		s.Fatalf("the gateway acknowledged no spans: %v", res.StatusCodes)
	}
	return res.Spans
}

// readTopic reads every record of topic, from the oldest offset to the
// end it has now, as the ingester gets them (envelope parsed).
func readTopic(ctx context.Context, brokers, topic string) ([]ingester.Record, error) {
	kc := kafka.Config{Brokers: brokers, ClientID: "tributary-bench", Version: "2.8.0", Timeout: 10 * time.Second}
	if err := kc.Validate(); err != nil {
		return nil, err
	}
	sc, err := kc.Sarama()
	if err != nil {
		return nil, err
	}
	client, err := sarama.NewClient(kc.BrokerList(), sc)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, err
	}
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		return nil, err
	}
	var recs []ingester.Record
	for _, p := range parts {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, err
		}
		start, err := client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return nil, err
		}
		if end <= start {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, start)
		if err != nil {
			return nil, err
		}
		for next := start; next < end; {
			select {
			case <-ctx.Done():
				pc.Close()
				return nil, ctx.Err()
			case m := <-pc.Messages():
				env, err := record.Parse(m.Headers)
				if err != nil {
					pc.Close()
					return nil, fmt.Errorf("%s/%d@%d: %w", topic, p, m.Offset, err)
				}
				recs = append(recs, ingester.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset,
					Key: m.Key, Value: m.Value, Headers: m.Headers, Envelope: env})
				next = m.Offset + 1
			case err := <-pc.Errors():
				pc.Close()
				return nil, err
			}
		}
		pc.Close()
	}
	return recs, nil
}

// installJaegerTemplates installs the sink's index templates into z, as
// the ingester does at start-up: the direct client's documents get the
// same mappings.
func (b *bench) installJaegerTemplates(ctx context.Context, s *scope, z *testenv.ZincServer) {
	cfg := spansSinkConfig()
	cfg.Addresses, cfg.Username, cfg.Password = z.ESURL, z.User, z.Password
	sink, err := elasticsearch.NewJaeger(ctx, cfg, b.loadLog)
	s.fatalIf(err, "install the Jaeger index templates")
	s.fatalIf(sink.Probe(ctx), "install the Jaeger index templates")
	s.fatalIf(sink.Close(ctx), "close the template installer")
}

// bulkDirect posts bodies to z's _bulk endpoint, concurrency at a time,
// and fails unless every document of every body was acknowledged.
func bulkDirect(ctx context.Context, z *testenv.ZincServer, bodies [][]byte, concurrency int) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency, DisableCompression: true}, Timeout: time.Minute}
	defer client.CloseIdleConnections()
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(bodies) || ctx.Err() != nil {
					return
				}
				if err := bulkOnce(ctx, client, z, bodies[i]); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// bulkOnce sends one _bulk body and checks that every item was indexed.
func bulkOnce(ctx context.Context, client *http.Client, z *testenv.ZincServer, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, z.ESURL+"/_bulk", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.SetBasicAuth(z.User, z.Password)
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("_bulk: %s: %.300s", resp.Status, raw)
	}
	var r struct {
		Errors bool              `json:"errors"`
		Error  json.RawMessage   `json:"error"`
		Items  []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("_bulk response: %w", err)
	}
	if want := bytes.Count(body, []byte("\n")) / 2; r.Errors || (len(r.Error) > 0 && string(r.Error) != "null") || len(r.Items) != want {
		return fmt.Errorf("_bulk: %d of %d items, errors %v: %.300s", len(r.Items), want, r.Errors, r.Error)
	}
	return nil
}

// waitIndexed polls z's span indices until they hold want documents and
// returns the time from t0 to that poll: ZincSearch acknowledges a _bulk
// request once the documents are in its write-ahead log and indexes them
// in the background (searchable a second or more later), so the
// acknowledgement alone would time its log, not its indexing. sent, if
// not nil, reports the direct client's end: an error ends the phase.
func waitIndexed(ctx context.Context, s *scope, z *testenv.ZincServer, want int, t0 time.Time, sent <-chan error) time.Duration {
	deadline := time.Now().Add(10 * time.Minute)
	got := 0
	for ctx.Err() == nil && time.Now().Before(deadline) {
		select {
		case err := <-sent:
			s.fatalIf(err, "direct _bulk")
		default:
		}
		var err error
		_, got, err = z.Search(s, "jaeger-span-*", map[string]any{"size": 0, "query": map[string]any{"match_all": map[string]any{}}})
		if err == nil && got >= want {
			return time.Since(t0)
		}
		time.Sleep(250 * time.Millisecond)
	}
	s.Fatalf("ZincSearch holds %d span documents after %s, want %d", got, time.Since(t0).Round(time.Second), want)
	return 0
}

// waitConsuming returns when ing consumed its first record.
func waitConsuming(ctx context.Context, s *scope, ing *proc) time.Time {
	deadline := time.Now().Add(2 * time.Minute)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if ing.Exited() {
			s.Fatalf("the ingester exited:\n%s", lastLines(ing.Output(), 5))
		}
		if f, err := scrape(ctx, ing.URL+"/metrics"); err == nil && f.sum("tributary_ingester_records_consumed_total", map[string]string{"sink": "jaeger"}) > 0 {
			return time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Fatalf("the ingester consumed nothing within 2 minutes:\n%s", lastLines(ing.Output(), 5))
	return time.Time{}
}
