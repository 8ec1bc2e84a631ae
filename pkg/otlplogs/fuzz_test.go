package otlplogs

import (
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
)

func seedLogs() plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("k8s.cluster.name", "c")
	rl.Resource().Attributes().PutStr("service.name", "s")
	rl.Resource().Attributes().PutEmptyMap("m").PutInt("k", 1)
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("sc")
	lr := sl.LogRecords().AppendEmpty()
	lr.SetTimestamp(pcommon.NewTimestampFromTime(time.Unix(1700000000, 0)))
	lr.Body().SetStr("line")
	lr.SetSeverityNumber(plog.SeverityNumberInfo)
	lr.SetTraceID([16]byte{1})
	lr.Attributes().PutStr("1x.y", "v")
	ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetEmptySlice().AppendEmpty().SetBool(true)
	return ld
}

// FuzzConvert: any body, protobuf or JSON, is refused with an error or
// mapped to a push request that decodes, whose every stream has the
// cluster label, with no more entries than the request had records.
func FuzzConvert(f *testing.F) {
	req := plogotlp.NewExportRequestFromLogs(seedLogs())
	pb, _ := req.MarshalProto()
	js, _ := req.MarshalJSON()
	f.Add(pb, false)
	f.Add(js, true)
	f.Add([]byte{}, true)
	cfg, err := LoadConfig("")
	if err != nil {
		f.Fatal(err)
	}
	c := NewConverter(cfg)
	f.Fuzz(func(t *testing.T, body []byte, isJSON bool) {
		res, err := c.Convert(body, isJSON, "dflt")
		if err != nil || res.Body == nil {
			return
		}
		raw, err := snappy.Decode(nil, res.Body)
		if err != nil {
			t.Fatal(err)
		}
		var pr push.PushRequest
		if err := pr.Unmarshal(raw); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range pr.Streams {
			if !strings.Contains(s.Labels, ClusterLabel+"=") {
				t.Fatalf("stream %s without a cluster", s.Labels)
			}
			n += len(s.Entries)
		}
		if n+res.Rejected != res.Records {
			t.Fatalf("%d entries + %d refused, request had %d records", n, res.Rejected, res.Records)
		}
	})
}
