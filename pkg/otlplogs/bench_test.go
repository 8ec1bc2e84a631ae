package otlplogs

import (
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
)

// BenchmarkConvert maps a request of 1000 records of ~110-byte lines;
// bytes/op against the body's size is what DecodeCost must cover.
func BenchmarkConvert(b *testing.B) {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("k8s.cluster.name", "c")
	rl.Resource().Attributes().PutStr("service.name", "svc")
	rl.Resource().Attributes().PutStr("host.name", "node-1")
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	now := time.Now()
	for j := range 1000 {
		lr := lrs.AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Duration(j))))
		lr.SetSeverityText("INFO")
		lr.Body().SetStr(fmt.Sprintf("request served method=GET route=/api/v1/items/%d status=200 duration_ms=%d user=u-%d", j%50, j%300, j))
		lr.Attributes().PutStr("http.route", "/api/v1/items")
	}
	body, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	if err != nil {
		b.Fatal(err)
	}
	cfg, _ := LoadConfig("")
	c := NewConverter(cfg)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for range b.N {
		if _, err := c.Convert(body, false, ""); err != nil {
			b.Fatal(err)
		}
	}
}
