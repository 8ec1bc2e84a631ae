package gateway

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
)

// ackingProducer acknowledges at once: the benchmarks measure the gateway's
// own cost per request (read, decode, validate, key, envelope), not Kafka's.
type ackingProducer struct{}

func (ackingProducer) Produce(context.Context, []*sarama.ProducerMessage) error { return nil }
func (ackingProducer) Ready(string) error                                       { return nil }
func (ackingProducer) Partitions(string) (int32, error)                         { return 12, nil }

func benchGateway(b *testing.B) http.Handler {
	var cfg Config
	fs := flag.NewFlagSet("b", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		b.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	return New(cfg, ackingProducer{}, reg, reg, slog.New(slog.NewTextHandler(io.Discard, nil))).Handler()
}

func benchWriteRequest(b *testing.B, cluster bool) []byte {
	req := &prompb.WriteRequest{}
	for i := 0; i < 2000; i++ {
		ls := []prompb.Label{{Name: "__name__", Value: fmt.Sprintf("http_requests_total_%d", i%50)}}
		if cluster {
			ls = append(ls, prompb.Label{Name: "cluster", Value: "prod-eu-1"})
		}
		ls = append(ls,
			prompb.Label{Name: "code", Value: "200"},
			prompb.Label{Name: "container", Value: "app"},
			prompb.Label{Name: "instance", Value: fmt.Sprintf("10.0.%d.%d:8080", i/256%256, i%256)},
			prompb.Label{Name: "job", Value: "kubernetes-pods"},
			prompb.Label{Name: "namespace", Value: fmt.Sprintf("team-%d", i%20)},
			prompb.Label{Name: "node", Value: fmt.Sprintf("node-%d", i%40)},
			prompb.Label{Name: "pod", Value: fmt.Sprintf("app-%d-7c9f8d6b5-x2x4z", i)},
		)
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Value: 1, Timestamp: time.Now().UnixMilli()}}}) // inside -limits.metrics.max-sample-age
	}
	raw, err := req.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

func benchServe(b *testing.B, h http.Handler, path string, body []byte, items int, headers ...string) {
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		for i := 0; i < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusNoContent {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	b.ReportMetric(float64(items*b.N)/b.Elapsed().Seconds(), "items/s")
}

// BenchmarkRemoteWrite: body → validated records with envelope, forwarded
// unchanged (every series has its cluster label).
func BenchmarkRemoteWrite(b *testing.B) {
	benchServe(b, benchGateway(b), "/api/v1/write", benchWriteRequest(b, true), 2000, "Content-Encoding", "snappy")
}

// BenchmarkRemoteWriteDefaultCluster: the cluster comes from the header,
// so every request is re-encoded.
func BenchmarkRemoteWriteDefaultCluster(b *testing.B) {
	benchServe(b, benchGateway(b), "/api/v1/write", benchWriteRequest(b, false), 2000, "Content-Encoding", "snappy", "X-Tributary-Cluster", "c")
}
