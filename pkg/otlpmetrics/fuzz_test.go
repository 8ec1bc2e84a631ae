package otlpmetrics

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

func defaultConfig(t testing.TB) Config {
	var c Config
	c.RegisterFlags("", flag.NewFlagSet("", flag.PanicOnError))
	if err := c.Validate(false); err != nil {
		t.Fatal(err)
	}
	return c
}

// seedMetrics has every metric type, a delta sum, a resource without a
// cluster and exemplars.
func seedMetrics() pmetric.Metrics {
	md := pmetric.NewMetrics()
	now := pcommon.NewTimestampFromTime(time.Unix(1700000000, 0))
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("k8s.cluster.name", "c")
	rm.Resource().Attributes().PutStr("service.name", "s")
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	g := ms.AppendEmpty()
	g.SetName("g")
	dp := g.SetEmptyGauge().DataPoints().AppendEmpty()
	dp.SetTimestamp(now)
	dp.SetIntValue(3)
	dp.Attributes().PutStr("cluster", "x")
	ex := dp.Exemplars().AppendEmpty()
	ex.SetDoubleValue(1)
	ex.SetTraceID([16]byte{1})
	s := ms.AppendEmpty()
	s.SetName("d")
	s.SetEmptySum().SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	s.Sum().DataPoints().AppendEmpty().SetTimestamp(now)
	h := ms.AppendEmpty()
	h.SetName("h")
	h.SetUnit("s")
	h.SetEmptyHistogram().SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	hp := h.Histogram().DataPoints().AppendEmpty()
	hp.SetTimestamp(now)
	hp.SetCount(3)
	hp.SetSum(2)
	hp.ExplicitBounds().FromRaw([]float64{1})
	hp.BucketCounts().FromRaw([]uint64{1, 2})
	e := ms.AppendEmpty()
	e.SetName("e")
	e.SetEmptyExponentialHistogram().SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	ep := e.ExponentialHistogram().DataPoints().AppendEmpty()
	ep.SetTimestamp(now)
	ep.SetScale(2)
	ep.SetCount(2)
	ep.Positive().BucketCounts().FromRaw([]uint64{1, 1})
	sm := ms.AppendEmpty()
	sm.SetName("sum")
	sp := sm.SetEmptySummary().DataPoints().AppendEmpty()
	sp.SetTimestamp(now)
	sp.QuantileValues().AppendEmpty().SetQuantile(0.5)
	md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty().SetName("nocluster")
	return md
}

// FuzzConvert: any body, protobuf or JSON, is refused with an error or
// converted to a remote-write request that decodes, whose every series
// has the cluster label; data points are never both kept and refused
// beyond what the request had.
func FuzzConvert(f *testing.F) {
	req := pmetricotlp.NewExportRequestFromMetrics(seedMetrics())
	pb, _ := req.MarshalProto()
	js, _ := req.MarshalJSON()
	f.Add(pb, false)
	f.Add(js, true)
	f.Add([]byte{}, false)
	f.Add([]byte(`{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"a.b","sum":{"aggregationTemporality":2,"dataPoints":[{"asDouble":1}]}}]}]}]}`), true)
	c := NewConverter(defaultConfig(f))
	f.Fuzz(func(t *testing.T, body []byte, isJSON bool) {
		res, err := c.Convert(context.Background(), body, isJSON, "dflt")
		if err != nil {
			return
		}
		if res.Rejected > res.DataPoints {
			t.Fatalf("refused %d of %d data points", res.Rejected, res.DataPoints)
		}
		if res.Body == nil {
			return
		}
		raw, err := snappy.Decode(nil, res.Body)
		if err != nil {
			t.Fatal(err)
		}
		var wr prompb.WriteRequest
		if err := wr.Unmarshal(raw); err != nil {
			t.Fatal(err)
		}
		for _, ts := range wr.Timeseries {
			has := false
			for _, l := range ts.Labels {
				has = has || (l.Name == ClusterLabel && l.Value != "")
			}
			if !has {
				t.Fatalf("series %v without a cluster", ts.Labels)
			}
		}
	})
}
