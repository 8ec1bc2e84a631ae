package otlpmetrics

import (
	"context"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// A resource whose data points lie far apart (a timestamp left at 0 next
// to a current one, as FuzzConvert found) keeps its data points but gets
// no target_info, which would have taken a sample every half lookback over
// 54 years; points close together still get their target_info.
func TestTargetInfoBoundedByTimeSpan(t *testing.T) {
	now := time.Unix(1700000000, 0)
	for _, tc := range []struct {
		name       string
		first      time.Time
		targetInfo bool
	}{
		{"points a minute apart", now.Add(-time.Minute), true},
		{"a point at 0 next to a current one", time.Unix(0, 0), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md := pmetric.NewMetrics()
			rm := md.ResourceMetrics().AppendEmpty()
			rm.Resource().Attributes().PutStr(ClusterAttribute, "c")
			rm.Resource().Attributes().PutStr("service.name", "s")
			rm.Resource().Attributes().PutStr("host.name", "h") // target_info needs an attribute besides job/instance
			g := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
			g.SetName("g")
			dps := g.SetEmptyGauge().DataPoints()
			for _, ts := range []time.Time{tc.first, now} {
				dp := dps.AppendEmpty()
				dp.SetTimestamp(pcommon.NewTimestampFromTime(ts))
				dp.SetDoubleValue(1)
			}
			body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			res, err := NewConverter(defaultConfig(t)).Convert(context.Background(), body, false, "dflt")
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("conversion took %s", d)
			}
			if res.Rejected != 0 {
				t.Fatalf("refused %d data points: %s", res.Rejected, res.Message)
			}
			raw, err := snappy.Decode(nil, res.Body)
			if err != nil {
				t.Fatal(err)
			}
			var wr prompb.WriteRequest
			if err := wr.Unmarshal(raw); err != nil {
				t.Fatal(err)
			}
			gauge, info := 0, 0
			for _, ts := range wr.Timeseries {
				for _, l := range ts.Labels {
					if l.Name == "__name__" && l.Value == "g" {
						gauge += len(ts.Samples)
					}
					if l.Name == "__name__" && l.Value == "target_info" {
						info += len(ts.Samples)
					}
				}
			}
			if gauge != 2 {
				t.Errorf("gauge samples %d, want 2", gauge)
			}
			if tc.targetInfo && info == 0 {
				t.Errorf("no target_info for points a minute apart")
			}
			if info > 64 { // maxTargetInfoSamples
				t.Errorf("target_info samples %d, bound %d", info, maxTargetInfoSamples)
			}
		})
	}
}
