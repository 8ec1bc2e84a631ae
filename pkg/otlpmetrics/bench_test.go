package otlpmetrics

import (
	"context"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// BenchmarkConvert converts a request of 2000 cumulative data points (20
// sums x 100 attribute sets); bytes/op against the body's size is what
// DecodeCost must cover.
func BenchmarkConvert(b *testing.B) {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("k8s.cluster.name", "c")
	rm.Resource().Attributes().PutStr("service.name", "svc")
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	now := pcommon.NewTimestampFromTime(time.Now())
	for m := range 20 {
		s := ms.AppendEmpty()
		s.SetName("http.server.requests." + strconv.Itoa(m))
		sum := s.SetEmptySum()
		sum.SetIsMonotonic(true)
		sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		for p := range 100 {
			dp := sum.DataPoints().AppendEmpty()
			dp.SetTimestamp(now)
			dp.SetDoubleValue(float64(p))
			dp.Attributes().PutStr("http.route", "/api/v1/items/"+strconv.Itoa(p))
		}
	}
	body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	if err != nil {
		b.Fatal(err)
	}
	c := NewConverter(defaultConfig(b))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for range b.N {
		if _, err := c.Convert(context.Background(), body, false, ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(2000*b.N)/b.Elapsed().Seconds(), "points/s")
}
