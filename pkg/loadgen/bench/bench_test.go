package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const exposition = `# HELP tributary_ingester_end_to_end_delay_seconds x
# TYPE tributary_ingester_end_to_end_delay_seconds histogram
tributary_ingester_end_to_end_delay_seconds_bucket{sink="prometheus",le="0.5"} 10
tributary_ingester_end_to_end_delay_seconds_bucket{sink="prometheus",le="1"} 90
tributary_ingester_end_to_end_delay_seconds_bucket{sink="prometheus",le="2"} 100
tributary_ingester_end_to_end_delay_seconds_bucket{sink="prometheus",le="+Inf"} 100
tributary_ingester_end_to_end_delay_seconds_sum{sink="prometheus"} 80
tributary_ingester_end_to_end_delay_seconds_count{sink="prometheus"} 100
tributary_ingester_end_to_end_delay_seconds_bucket{sink="loki",le="0.5"} 0
tributary_ingester_end_to_end_delay_seconds_bucket{sink="loki",le="1"} 0
tributary_ingester_end_to_end_delay_seconds_bucket{sink="loki",le="2"} 0
tributary_ingester_end_to_end_delay_seconds_bucket{sink="loki",le="+Inf"} 4
tributary_ingester_end_to_end_delay_seconds_sum{sink="loki"} 80
tributary_ingester_end_to_end_delay_seconds_count{sink="loki"} 4
# TYPE tributary_ingester_items_written_total counter
tributary_ingester_items_written_total{sink="prometheus"} 1500
tributary_ingester_items_written_total{sink="loki"} 7
# TYPE tributary_ingester_dlq_records_total counter
tributary_ingester_dlq_records_total{sink="prometheus",reason="rejected"} 2
tributary_ingester_dlq_records_total{sink="prometheus",reason="failed"} 3
`

func TestFamilies(t *testing.T) {
	f, err := parseFamilies(strings.NewReader(exposition))
	require.NoError(t, err)
	require.Equal(t, 1500.0, f.sum("tributary_ingester_items_written_total", map[string]string{"sink": "prometheus"}))
	require.Equal(t, 1507.0, f.sum("tributary_ingester_items_written_total", nil))
	require.Equal(t, 5.0, f.sum("tributary_ingester_dlq_records_total", map[string]string{"sink": "prometheus"}))
	require.Zero(t, f.sum("tributary_ingester_dlq_records_total", map[string]string{"sink": "loki"}))
	require.Zero(t, f.sum("absent", nil))

	// As PromQL's histogram_quantile: rank 50 of 100 lies in (0.5, 1]
	// holding 80 observations from 10: 0.5 + 0.5 × 40/80.
	bs := f.buckets("tributary_ingester_end_to_end_delay_seconds", map[string]string{"sink": "prometheus"})
	require.Len(t, bs, 4, "the +Inf bucket is counted once")
	v, ok := histogramQuantile(0.5, bs)
	require.True(t, ok)
	require.InDelta(t, 0.75, v, 1e-9)
	v, _ = histogramQuantile(0.99, bs)
	require.InDelta(t, 1.9, v, 1e-9)
	// In the +Inf bucket: its lower bound.
	v, ok = histogramQuantile(0.99, f.buckets("tributary_ingester_end_to_end_delay_seconds", map[string]string{"sink": "loki"}))
	require.True(t, ok)
	require.Equal(t, 2.0, v)
	_, ok = histogramQuantile(0.5, f.buckets("tributary_ingester_end_to_end_delay_seconds", map[string]string{"sink": "none"}))
	require.False(t, ok)
}

func TestWatchRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	pts := []point{{at(0), 0}, {at(1), 0}, {at(2), 100}, {at(3), 300}, {at(4), 500}, {at(5), 600}}
	start := at(2)

	t.Run("cut by the window: from the start to the last poll", func(t *testing.T) {
		a := &point{at(3), 300}
		r := watchRate(pts, t0, start, a, 0)
		require.False(t, r.caughtUp)
		require.InDelta(t, 150.0, r.rate, 1e-9) // (600-300)/(5-3)
		require.Equal(t, 600.0, r.count)
	})
	t.Run("caught up: the poll that saw the end is left out", func(t *testing.T) {
		a := &point{start, 0}
		r := watchRate(pts, t0, start, a, 600)
		require.True(t, r.caughtUp)
		require.InDelta(t, 250.0, r.rate, 1e-9) // 500 from t=2 to t=4
	})
	t.Run("faster than the polls: a lower bound", func(t *testing.T) {
		fast := []point{{at(0), 0}, {at(1), 0}, {at(2), 600}}
		r := watchRate(fast, t0, at(2), &point{at(2), 0}, 600)
		require.True(t, r.caughtUp)
		require.InDelta(t, 600.0, r.rate, 1e-9) // 600 between the poll at 1 and at 2
	})
	t.Run("never started", func(t *testing.T) {
		r := watchRate(pts[:2], t0, time.Time{}, nil, 600)
		require.Zero(t, r.rate)
		require.False(t, r.caughtUp)
	})
}

func TestBenchValues(t *testing.T) {
	out := `goos: linux
BenchmarkCeilingSnappyDecode    	    1000	    100 ns/op	  28701387 samples/s
BenchmarkCeilingValidate        	     100	   1000 ns/op	   3000000 samples/s	   3873480 samples/cpu-s
BenchmarkCeilingValidate-2      	     100	   1000 ns/op	   3000000 samples/s	   2000000 samples/cpu-s
BenchmarkCeilingValidateX       	     100	   1000 ns/op	   9 samples/cpu-s
PASS`
	require.Equal(t, []float64{3873480, 2000000}, benchValues(out, "BenchmarkCeilingValidate"))
	require.Equal(t, []float64{28701387}, benchValues(out, "BenchmarkCeilingSnappyDecode"))
	v, ok := upperMedian([]float64{3, 1, 2, 4})
	require.True(t, ok)
	require.Equal(t, 3.0, v)
	m, _ := median([]float64{3, 1, 2, 4})
	require.Equal(t, 2.5, m)
}

func TestReport(t *testing.T) {
	r := results{
		"gateway_samples_per_sec": 2128785.4, "producer_ceiling_samples_per_sec": 3591875,
		"gateway_samples_per_core_sec": 1959024, "ceiling_validate_samples_per_core_sec": 3873480,
		"gateway_per_core_vs_ceiling": 0.58, // per round: wins over the ratio of the medians
		"e2e_p99_ms":                  1100, "logs_mb_per_sec": 42,
	}
	var out bytes.Buffer
	require.NoError(t, writeReport(&out, r, []string{"d: no topic"}, 20, 2, 8))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	text := out.String()
	require.Contains(t, text, "gateway: remote-write → Kafka, acked                      2,128,785  samples/s\n")
	require.Contains(t, text, "1. gateway per core / validate ceiling (per round)             0.58  >= 0.75  MISSED\n")
	require.Contains(t, text, "2. gateway / producer ceiling                                  0.59  >= 0.5  ok\n")
	require.Contains(t, text, "4. e2e p99 (ms)                                               1,100  < 2000  ok\n")
	require.Contains(t, text, "6. logs protobuf (MB/s)                                       42.00  >= 100  MISSED\n")
	require.Contains(t, text, "6. logs JSON (MB/s)                                               -  >= 40  \n")
	require.Contains(t, text, "FAILED d: no topic\n")

	var js map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &js), "the last line is the JSON object")
	require.Equal(t, 20.0, js["bench_seconds"])
	require.Equal(t, 2128785.4, js["gateway_samples_per_sec"])
	require.InDelta(t, 0.593, js["gateway_vs_producer_ceiling"], 1e-9)
	require.Equal(t, 0.58, js["gateway_per_core_vs_ceiling"])
	require.Contains(t, js, "logs_json_mb_per_sec")
	require.Nil(t, js["logs_json_mb_per_sec"])
	for _, rw := range rows {
		require.Contains(t, js, rw.key)
	}
	for _, q := range ratios {
		require.Contains(t, js, q.key)
	}
}

// TestSpansReport: the spans table has a column per request size, the
// gateway / Collector ratio of each, and the bound the floor sets, which
// the JSON line carries too.
func TestSpansReport(t *testing.T) {
	r := results{
		"spans_gateway_grpc_per_sec": 200000, "spans_gateway_grpc_per_core_sec": 300000, "spans_otelcol_grpc_per_core_sec": 120000,
		"spans_gateway_grpc_per_sec_512": 400000, "spans_gateway_grpc_per_core_sec_512": 500000, "spans_otelcol_grpc_per_core_sec_512": 200000,
		"spans_ceiling_per_core_sec": 900000, "spans_ceiling_per_core_sec_512": 920000,
	}
	out := results{}
	var b bytes.Buffer
	require.NoError(t, writeReport(&b, r, nil, 10, 2, 8))
	text := b.String()
	require.Contains(t, text, "spans per CPU-second, by spans per request          100        512\n")
	require.Contains(t, text, "gateway, OTLP grpc                              300,000    500,000\n")
	require.Contains(t, text, "  gateway / Collector                              2.50       2.50\n")
	require.Contains(t, text, "  floor / Collector (the ratio's bound)            7.50       4.60\n")
	require.Contains(t, text, "21. same, 512 spans per request, gRPC                          2.50  >= 5  MISSED\n")
	lines := strings.Split(strings.TrimSpace(text), "\n")
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &out))
	require.InDelta(t, 4.6, out["spans_ceiling_vs_otelcol_per_core_grpc_512"], 1e-9)
	require.InDelta(t, 7.5, out["spans_ceiling_vs_otelcol_per_core_grpc"], 1e-9)
	require.Equal(t, []int{100, 512}, spansSizes(r))
}
