package logs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary-io/tributary/pkg/agent/logs/logstest"
)

// encodingPusher costs what the gateway client costs before the network:
// the protobuf encoding and the snappy block of each batch.
type encodingPusher struct{ lines atomic.Int64 }

func (p *encodingPusher) Push(_ context.Context, req *push.PushRequest) error {
	raw, err := req.Marshal()
	if err != nil {
		return err
	}
	_ = snappy.Encode(nil, raw)
	n := 0
	for _, s := range req.Streams {
		n += len(s.Entries)
	}
	p.lines.Add(int64(n))
	return nil
}

// BenchmarkTailerShip is the agent's log path without the network: 100
// container log files of CRI lines (100-300 bytes), read, parsed, batched
// and encoded from their start. One op is one line; lines/s is per
// wall-clock second of the run (the tailer is one goroutine plus the
// sender's).
func BenchmarkTailerShip(b *testing.B) {
	const files, perFile = 100, 2000
	dir := b.TempDir()
	pods := filepath.Join(dir, "pods")
	for i := range files {
		w := logstest.NewWriter(b, filepath.Join(pods, fmt.Sprintf("ns_pod-%03d_uid-%03d", i, i), "app", "0.log"))
		for j := range perFile {
			text := fmt.Sprintf("level=info caller=handler.go:%d msg=\"request served\" path=/api/v1/items/%d status=200 ", j%400, i*perFile+j)
			w.CRI("stdout", "F", text+strings.Repeat("x", 40+(j*37)%160))
		}
	}
	total := int64(files * perFile)
	b.ResetTimer()
	start := time.Now()
	var shipped int64
	for k := 0; shipped < int64(b.N); k++ {
		cfg := Config{PodsDir: pods, PositionsFile: filepath.Join(dir, fmt.Sprintf("pos-%d.json", k))}
		if err := cfg.Validate(); err != nil {
			b.Fatal(err)
		}
		p := &encodingPusher{}
		tl, err := New(Params{Config: &cfg, Cluster: "c", Node: "n", Pusher: p, Registerer: prometheus.NewRegistry(),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- tl.Run(ctx) }()
		for p.lines.Load() < total {
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		shipped += total
	}
	b.ReportMetric(float64(shipped)/time.Since(start).Seconds(), "lines/s")
	b.ReportMetric(float64(shipped)/float64(b.N), "lines/op")
}
