package loadgen

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/record"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

func testConfig(mode, target string) Config {
	var cfg Config
	fs := flagSet()
	cfg.RegisterFlags(fs)
	cfg.Mode, cfg.Target = mode, target
	cfg.Duration = 300 * time.Millisecond
	cfg.Concurrency = 4
	cfg.Progress = 0
	cfg.Metrics = SeriesConfig{Series: 4000, SeriesPerRequest: 500, Labels: 10, Clusters: 3}
	cfg.Logs = StreamConfig{Streams: 80, StreamsPerRequest: 10, EntriesPerRequest: 200, LineBytes: 100}
	return cfg
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// A receiver that checks what a real one would: every body decodes, and no
// series ever gets a sample that is not newer than its last one, although
// four senders run at once.
func TestRunRemoteWrite(t *testing.T) {
	var mu sync.Mutex
	last := map[string]int64{}
	var samples int64
	var outOfOrder []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		raw, err := snappy.Decode(nil, body)
		var req prompb.WriteRequest
		if err == nil {
			err = req.Unmarshal(raw)
		}
		if err != nil || r.URL.Path != "/api/v1/write" || r.Header.Get("Content-Encoding") != "snappy" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, ts := range req.Timeseries {
			key := seriesKey(ts.Labels)
			if ts.Samples[0].Timestamp <= last[key] {
				outOfOrder = append(outOfOrder, key)
			}
			last[key] = ts.Samples[0].Timestamp
			samples++
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	cfg := testConfig(ModeRemoteWrite, srv.URL)
	cfg.Warmup = 100 * time.Millisecond
	res, err := Run(context.Background(), cfg, quiet)
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, outOfOrder)
	require.Positive(t, res.Samples)
	require.LessOrEqual(t, res.Samples, samples, "only the measured window is counted")
	require.Equal(t, res.Requests, res.StatusCodes["204"])
	require.Zero(t, res.Errors)
	require.Equal(t, res.Samples, res.Requests*500)
	require.Positive(t, res.SamplesPerSec)
	require.Positive(t, res.P99Ms)
	require.True(t, res.Complete)
}

func TestRunCountsRefusals(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "overloaded", http.StatusTooManyRequests)
	}))
	defer srv.Close()
	cfg := testConfig(ModeLokiJSON, srv.URL)
	cfg.ErrorBackoff = 10 * time.Millisecond
	res, err := Run(context.Background(), cfg, quiet)
	require.NoError(t, err)
	require.Positive(t, res.Requests)
	require.Equal(t, res.Requests, res.Errors)
	require.Equal(t, res.Requests, res.StatusCodes["429"])
	require.Zero(t, res.Entries)
	require.Zero(t, res.BytesPerSec)
}

// A paced run never sends more than the schedule allows.
func TestRunRate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cfg := testConfig(ModeLokiProto, srv.URL)
	cfg.Rate = 20 // one request per 50 ms: 6 slots in 300 ms, 7 if the window opens just after the schedule starts
	res, err := Run(context.Background(), cfg, quiet)
	require.NoError(t, err)
	require.Positive(t, res.Requests)
	require.LessOrEqual(t, res.Requests, int64(7))
	require.Equal(t, res.Requests*200, res.Entries)
	require.Equal(t, float64(res.Entries*100)/res.DurationS, res.BytesPerSec)
}

// kafka-produce writes what the gateway would (key, envelope, body), and
// kafka-consume reads all of it back and counts the same samples.
func TestRunKafkaProduceAndConsume(t *testing.T) {
	kafka := testenv.Kafka(t, 4)
	cfg := testConfig(ModeKafkaProduce, kafka.Addr)
	cfg.Tenant = "team-a"
	produced, err := Run(context.Background(), cfg, quiet)
	require.NoError(t, err)
	require.Positive(t, produced.Samples)
	require.Equal(t, produced.Requests, produced.StatusCodes["acked"])
	require.Equal(t, produced.Requests, produced.Records)

	recs := testenv.ReadTopic(t, kafka.Addr, "tributary.metrics")
	require.GreaterOrEqual(t, int64(len(recs)), produced.Records) // plus the unmeasured tail
	for _, m := range recs {
		env, err := record.Parse(m.Headers)
		require.NoError(t, err)
		require.Equal(t, recordpb.Signal_SIGNAL_METRICS, env.GetSignal())
		require.Equal(t, string(m.Key), env.GetCluster())
		require.Equal(t, "team-a", env.GetTenant())
		require.EqualValues(t, 500, env.GetItems())
		raw, err := snappy.Decode(nil, m.Value)
		require.NoError(t, err)
		var req prompb.WriteRequest
		require.NoError(t, req.Unmarshal(raw))
		require.Len(t, req.Timeseries, 500)
	}

	cfg = testConfig(ModeKafkaConsume, kafka.Addr)
	cfg.Duration = time.Minute
	cfg.WatchPIDs = "1"
	consumed, err := Run(context.Background(), cfg, quiet)
	require.NoError(t, err)
	require.True(t, consumed.Complete)
	require.EqualValues(t, len(recs), consumed.Records)
	require.EqualValues(t, 500*len(recs), consumed.Samples)
	require.Positive(t, consumed.SamplesPerSec)
	require.Contains(t, consumed.PIDs, "1")
}

func TestValidate(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"unknown mode":              func(c *Config) { c.Mode = "grpc" },
		"no target":                 func(c *Config) { c.Target = "" },
		"fewer bodies than senders": func(c *Config) { c.Concurrency = 9 },
		"too few labels":            func(c *Config) { c.Metrics.Labels = 3 },
		"json records":              func(c *Config) { c.Mode, c.Payload = ModeKafkaProduce, ModeLokiJSON },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(ModeRemoteWrite, "http://127.0.0.1:1")
			require.NoError(t, cfg.Validate())
			mutate(&cfg)
			require.Error(t, cfg.Validate())
		})
	}
}

func flagSet() *flag.FlagSet { return flag.NewFlagSet("test", flag.ContinueOnError) }

// With a warmup, nothing is measured before every series reached the
// receiver once.
func TestWarmupCoversEverySeries(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	var allSeenAt, firstMeasured time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		raw, _ := snappy.Decode(nil, body)
		var req prompb.WriteRequest
		_ = req.Unmarshal(raw)
		mu.Lock()
		for _, ts := range req.Timeseries {
			seen[seriesKey(ts.Labels)] = true
		}
		if len(seen) == 4000 && allSeenAt.IsZero() {
			allSeenAt = time.Now()
		}
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // a slow receiver: a round takes longer than the warmup
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cfg := testConfig(ModeRemoteWrite, srv.URL)
	cfg.Concurrency = 1
	cfg.Warmup = time.Millisecond
	start := time.Now()
	res, err := Run(context.Background(), cfg, quiet)
	require.NoError(t, err)
	firstMeasured = time.Now().Add(-time.Duration(res.DurationS * float64(time.Second)))
	require.Positive(t, res.Requests)
	mu.Lock()
	defer mu.Unlock()
	require.False(t, allSeenAt.IsZero())
	require.True(t, allSeenAt.Before(firstMeasured), "window opened %s after start, all series seen %s after start",
		firstMeasured.Sub(start), allSeenAt.Sub(start))
}
