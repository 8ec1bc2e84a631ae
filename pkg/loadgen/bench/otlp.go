package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/protobuf/proto"
)

// OTLP request shapes of the otlp phase: a metrics request of 2000 data
// points (remote-write's default request size in samples), a logs request
// of 1000 records of ~150-byte lines (an SDK batch), 8 bodies of each sent
// in turn, one cluster each.
const (
	otlpBodies          = 8
	otlpMetricsPerBody  = 20
	otlpPointsPerMetric = 100 // attribute sets
	otlpLogsPerBody     = 1000
)

// phaseOTLP measures OTLP metrics and logs through the gateway (OTLP/HTTP
// protobuf → conversion → devbroker, acks=all) next to remote-write and
// Loki push into the same gateway, one window each: data points/s and
// line bytes/s, and each per gateway CPU-second.
func (b *bench) phaseOTLP(ctx context.Context, s *scope) {
	b.log.Info("phase otlp: remote-write, Loki push, OTLP metrics and OTLP logs → gateway → devbroker", "window", b.short)
	broker := b.startBroker(s)
	gw := b.startGateway(s, broker.Addr)
	defer stop(gw, broker)

	res, err := b.load(ctx, "otlp-rw", "-mode=remote-write", "-target="+gw.URL, warmupArg(b.warmup), pidsArg(gw), "-duration="+b.short.String())
	s.fatalIf(err, "loadgen remote-write")
	b.res["otlp_phase_rw_samples_per_sec"] = res.SamplesPerSec
	if c := res.PIDs[pidKey(gw)].CPUCores; c > 0 {
		b.res["otlp_phase_rw_samples_per_core_sec"] = res.SamplesPerSec / c
	}
	res, err = b.load(ctx, "otlp-loki", "-mode=loki-proto", "-target="+gw.URL, warmupArg(b.warmup), pidsArg(gw), "-duration="+b.short.String())
	s.fatalIf(err, "loadgen loki-proto")
	b.res["otlp_phase_loki_mb_per_sec"] = res.BytesPerSec / 1e6
	if c := res.PIDs[pidKey(gw)].CPUCores; c > 0 {
		b.res["otlp_phase_loki_mb_per_core_sec"] = res.BytesPerSec / 1e6 / c
	}

	mBodies, mPoints := otlpMetricBodies()
	n, secs, cpu, err := b.postOTLP(ctx, gw, "/v1/metrics", mBodies, mPoints, func(b []byte) (int64, error) {
		var r colmetricspb.ExportMetricsServiceResponse
		err := proto.Unmarshal(b, &r)
		return r.GetPartialSuccess().GetRejectedDataPoints(), err
	})
	s.fatalIf(err, "OTLP metrics")
	b.res["otlp_metrics_samples_per_sec"] = float64(n) / secs
	if cpu > 0 {
		b.res["otlp_metrics_samples_per_core_sec"] = float64(n) / cpu
	}
	lBodies, lBytes := otlpLogBodies()
	n, secs, cpu, err = b.postOTLP(ctx, gw, "/v1/logs", lBodies, lBytes, func(b []byte) (int64, error) {
		var r collogspb.ExportLogsServiceResponse
		err := proto.Unmarshal(b, &r)
		return r.GetPartialSuccess().GetRejectedLogRecords(), err
	})
	s.fatalIf(err, "OTLP logs")
	b.res["otlp_logs_mb_per_sec"] = float64(n) / secs / 1e6
	if cpu > 0 {
		b.res["otlp_logs_mb_per_core_sec"] = float64(n) / cpu / 1e6
	}
}

// postOTLP sends bodies in turn from b.cfg.Concurrency workers for the
// warm-up and then b.short, and returns the units (weights[i] per
// accepted body i) acknowledged in the measured window, its length, and
// the gateway's CPU seconds in it. A partial success or an error answer
// fails the run: the figures must be of full acceptance.
func (b *bench) postOTLP(ctx context.Context, gw *proc, path string, bodies [][]byte, weights []int64, rejected func([]byte) (int64, error)) (int64, float64, float64, error) {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: b.cfg.Concurrency}}
	var (
		measuring atomic.Bool
		units     atomic.Int64
		firstErr  atomic.Pointer[error]
		next      atomic.Int64
		wg        sync.WaitGroup
	)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range b.cfg.Concurrency {
		wg.Go(func() {
			for runCtx.Err() == nil {
				i := int(next.Add(1)) % len(bodies)
				req, _ := http.NewRequestWithContext(runCtx, http.MethodPost, gw.URL+path, bytes.NewReader(bodies[i]))
				req.Header.Set("Content-Type", "application/x-protobuf")
				resp, err := client.Do(req)
				if err != nil {
					if runCtx.Err() == nil {
						firstErr.CompareAndSwap(nil, &err)
					}
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err := fmt.Errorf("%s: HTTP %d: %.200s", path, resp.StatusCode, body)
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				if n, err := rejected(body); err != nil || n > 0 {
					err = fmt.Errorf("%s: %d refused (%v): %.200s", path, n, err, body)
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				if measuring.Load() {
					units.Add(weights[i])
				}
			}
		})
	}
	select {
	case <-ctx.Done():
	case <-time.After(b.warmup):
	}
	smp := startSampler(gw.PID())
	start := time.Now()
	measuring.Store(true)
	select {
	case <-ctx.Done():
	case <-time.After(b.short):
	}
	measuring.Store(false)
	secs := time.Since(start).Seconds()
	u := smp.end()[0]
	cancel()
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return 0, 0, 0, *p
	}
	return units.Load(), secs, u.cpuSeconds, u.err
}

// otlpMetricBodies are protobuf ExportMetricsServiceRequests of
// otlpMetricsPerBody cumulative sums with otlpPointsPerMetric attribute
// sets each, stamped now, and the data points of each.
func otlpMetricBodies() ([][]byte, []int64) {
	now := pcommon.NewTimestampFromTime(time.Now())
	start := pcommon.NewTimestampFromTime(time.Now().Add(-time.Hour))
	var bodies [][]byte
	var points []int64
	for i := range otlpBodies {
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		ra := rm.Resource().Attributes()
		ra.PutStr("k8s.cluster.name", "bench-"+strconv.Itoa(i%4))
		ra.PutStr("service.name", "svc-"+strconv.Itoa(i))
		ra.PutStr("service.instance.id", "pod-"+strconv.Itoa(i))
		ms := rm.ScopeMetrics().AppendEmpty().Metrics()
		for m := range otlpMetricsPerBody {
			metric := ms.AppendEmpty()
			metric.SetName("http.server.requests." + strconv.Itoa(m))
			sum := metric.SetEmptySum()
			sum.SetIsMonotonic(true)
			sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			for p := range otlpPointsPerMetric {
				dp := sum.DataPoints().AppendEmpty()
				dp.SetStartTimestamp(start)
				dp.SetTimestamp(now)
				dp.SetDoubleValue(float64(p))
				dp.Attributes().PutStr("http.route", "/api/v1/items/"+strconv.Itoa(p))
				dp.Attributes().PutInt("http.response.status_code", 200)
			}
		}
		b, _ := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
		bodies = append(bodies, b)
		// target_info is one more series per body, not counted.
		points = append(points, otlpMetricsPerBody*otlpPointsPerMetric)
	}
	return bodies, points
}

// otlpLogBodies are protobuf ExportLogsServiceRequests of otlpLogsPerBody
// records, and the line bytes of each.
func otlpLogBodies() ([][]byte, []int64) {
	now := time.Now()
	var bodies [][]byte
	var lineBytes []int64
	for i := range otlpBodies {
		ld := plog.NewLogs()
		rl := ld.ResourceLogs().AppendEmpty()
		ra := rl.Resource().Attributes()
		ra.PutStr("k8s.cluster.name", "bench-"+strconv.Itoa(i%4))
		ra.PutStr("service.name", "svc-"+strconv.Itoa(i))
		ra.PutStr("k8s.namespace.name", "shop")
		ra.PutStr("k8s.pod.name", "pod-"+strconv.Itoa(i))
		lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
		var n int64
		for j := range otlpLogsPerBody {
			lr := lrs.AppendEmpty()
			lr.SetTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Duration(j) * time.Microsecond)))
			lr.SetSeverityNumber(plog.SeverityNumberInfo)
			lr.SetSeverityText("INFO")
			line := fmt.Sprintf("request served method=GET route=/api/v1/items/%d status=200 duration_ms=%d user=u-%d bytes=%d trace=%016x", j%50, j%300, j%1000, 1000+j, j)
			lr.Body().SetStr(line)
			lr.Attributes().PutStr("http.route", "/api/v1/items")
			n += int64(len(line))
		}
		b, _ := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
		bodies = append(bodies, b)
		lineBytes = append(lineBytes, n)
	}
	return bodies, lineBytes
}
