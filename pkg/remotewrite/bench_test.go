package remotewrite

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/tributary-io/tributary/pkg/loadgen"
)

// benchBody is a remote-write request as in the performance issue: 2000
// series with 10 labels and one sample each.
func benchBody(b *testing.B, withCluster bool) ([]byte, int) {
	req := &prompb.WriteRequest{}
	now := time.Now().UnixMilli() // inside the time window
	for i := 0; i < 2000; i++ {
		ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: fmt.Sprintf("http_requests_total_%d", i%50)}}}
		if withCluster {
			ts.Labels = append(ts.Labels, prompb.Label{Name: "cluster", Value: "prod-eu-1"})
		}
		ts.Labels = append(ts.Labels,
			prompb.Label{Name: "code", Value: []string{"200", "404", "500"}[i%3]},
			prompb.Label{Name: "container", Value: "app"},
			prompb.Label{Name: "instance", Value: fmt.Sprintf("10.0.%d.%d:8080", i/256%256, i%256)},
			prompb.Label{Name: "job", Value: "kubernetes-pods"},
			prompb.Label{Name: "namespace", Value: fmt.Sprintf("team-%d", i%20)},
			prompb.Label{Name: "node", Value: fmt.Sprintf("node-%d", i%40)},
			prompb.Label{Name: "pod", Value: fmt.Sprintf("app-%d-7c9f8d6b5-x2x4z", i)},
		)
		if !withCluster {
			ts.Labels = append(ts.Labels, prompb.Label{Name: "zone", Value: "eu-1a"})
		}
		ts.Samples = []prompb.Sample{{Value: float64(i), Timestamp: now}}
		req.Timeseries = append(req.Timeseries, ts)
	}
	raw, err := req.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	return snappy.Encode(nil, raw), 2000
}

func reportSamples(b *testing.B, samples int) {
	b.ReportMetric(float64(samples*b.N)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkParse is the gateway's decode path when the request is forwarded
// unchanged (every series carries the cluster label).
func BenchmarkParse(b *testing.B) {
	body, n := benchBody(b, true)
	var p Parser
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Parse(body, "", DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
	reportSamples(b, n)
}

// BenchmarkParseRewrite: series without a cluster label get the default,
// so the request is re-encoded.
func BenchmarkParseRewrite(b *testing.B) {
	body, n := benchBody(b, false)
	var p Parser
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Parse(body, "dflt", DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
	reportSamples(b, n)
}

// loadgenBodies are the bodies `make bench` sends the gateway (the load
// tool's generator with its defaults: 100k series, 2000 per request, 10
// labels, 3 clusters), so that ceilings are measured on the same bytes and
// with the same cache footprint as the gateway: a benchmark that decodes one
// body over and over keeps it in cache, which traffic never does.
func loadgenBodies(b *testing.B) ([][]byte, int) {
	bodies, err := loadgen.RemoteWriteBodies(loadgen.SeriesConfig{Series: 100000, SeriesPerRequest: 2000, Labels: 10, Clusters: 3})
	if err != nil {
		b.Fatal(err)
	}
	out := make([][]byte, len(bodies))
	for i, body := range bodies {
		body.Stamp(time.Now())
		out[i] = body.Data
	}
	return out, bodies[0].Items
}

// BenchmarkCeilingSnappyDecode is the floor of any decode path.
func BenchmarkCeilingSnappyDecode(b *testing.B) {
	bodies, n := loadgenBodies(b)
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(bodies[0])))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := snappy.Decode(buf, bodies[i%len(bodies)]); err != nil {
			b.Fatal(err)
		}
	}
	reportSamples(b, n)
}

// BenchmarkCeilingValidate is the cheapest full validation: snappy decode
// plus the walk that checks every label, sortedness, __name__ and reads the
// cluster, without producing records.
//
// Besides samples/s (wall clock), it reports samples per CPU-second of the
// benchmark's thread: the gateway's efficiency is counted in CPU-seconds,
// and on a shared machine the two differ whenever the benchmark is
// descheduled.
func BenchmarkCeilingValidate(b *testing.B) {
	bodies, n := loadgenBodies(b)
	var p Parser
	buf := make([]byte, 1<<20)
	lim := DefaultLimits()
	b.SetBytes(int64(len(bodies[0])))
	b.ReportAllocs()
	runtime.LockOSThread() // so that the thread's CPU time is the loop's
	defer runtime.UnlockOSThread()
	cpu0 := threadCPU(b)
	i := 0
	for b.Loop() {
		i++
		dec, err := snappy.Decode(buf, bodies[i%len(bodies)])
		if err != nil {
			b.Fatal(err)
		}
		if err := p.walk(dec, "", lim); err != nil {
			b.Fatal(err)
		}
	}
	reportSamples(b, n)
	if cpu := threadCPU(b) - cpu0; cpu > 0 {
		b.ReportMetric(float64(n*b.N)/cpu.Seconds(), "samples/cpu-s")
	}
}

// threadCPU is the CPU time (user + system) of the calling OS thread.
func threadCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBaselineUnmarshal is what the walk replaces: snappy decode plus
// gogo prompb Unmarshal, with no validation at all.
func BenchmarkBaselineUnmarshal(b *testing.B) {
	body, n := benchBody(b, true)
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		dec, err := snappy.Decode(buf, body)
		if err != nil {
			b.Fatal(err)
		}
		var req prompb.WriteRequest
		if err := req.Unmarshal(dec); err != nil {
			b.Fatal(err)
		}
	}
	reportSamples(b, n)
}

// BenchmarkParseClusters: one series per cluster, the bound lifted, so the
// split's cost per series shows whether it stays linear (it was quadratic:
// 128,000 clusters took 41 s).
func BenchmarkParseClusters(b *testing.B) {
	for _, n := range []int{16000, 128000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			req := &prompb.WriteRequest{}
			now := time.Now().UnixMilli()
			for i := 0; i < n; i++ {
				req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
					Labels:  []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "cluster", Value: fmt.Sprintf("c%06d", i)}},
					Samples: []prompb.Sample{{Value: 1, Timestamp: now}},
				})
			}
			raw, err := req.Marshal()
			if err != nil {
				b.Fatal(err)
			}
			body := snappy.Encode(nil, raw)
			lim := DefaultLimits()
			lim.MaxDecodedBytes = 64 << 20
			lim.MaxClusters = n
			var p Parser
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Parse(body, "", lim); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/series")
		})
	}
}
