package spanmetrics

import (
	"strconv"

	"github.com/prometheus/prometheus/prompb"
)

// Metric names as the spanmetrics connector's calls and duration (unit
// ms, namespace traces.span.metrics) appear in Prometheus after the
// collector's translation.
const (
	callsName    = "traces_span_metrics_calls_total"
	durationName = "traces_span_metrics_duration_milliseconds"
)

// seriesPerRequest is how many label sets one request (one record handed
// to the Prometheus sink) carries: 20 series each, ~2 MiB decoded for 500,
// far under every backend's request limit; the sink sends several such
// records together as one request when they fit.
const seriesPerRequest = 500

// leValues are the le label values, +Inf last, formatted as the
// collector's Prometheus translation does.
var leValues = func() []string {
	out := make([]string, 0, nBuckets)
	for _, b := range bounds {
		out = append(out, strconv.FormatFloat(b, 'f', -1, 64))
	}
	return append(out, "+Inf")
}()

// written is one label set's values in a request.
type written struct {
	s *series
	v cumulative
}

// requests builds the remote-write requests for ws at ts (ms), at most
// seriesPerRequest label sets each.
func requests(ws []written, ts int64) []*prompb.WriteRequest {
	var out []*prompb.WriteRequest
	for len(ws) > 0 {
		n := min(len(ws), seriesPerRequest)
		out = append(out, request(ws[:n], ts))
		ws = ws[n:]
	}
	return out
}

func request(ws []written, ts int64) *prompb.WriteRequest {
	const perSet = nBuckets + 3 // calls, buckets, sum, count
	req := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, 0, len(ws)*perSet)}
	samples := make([]prompb.Sample, 0, len(ws)*perSet)
	var labels []prompb.Label
	for _, w := range ws {
		base := w.s.labels
		// One backing array for the label sets of this label set's 20
		// series: __name__, the base labels and, for buckets, le.
		labels = make([]prompb.Label, 0, perSet*(len(base)+2))
		add := func(name string, le string, v float64) {
			start := len(labels)
			labels = append(labels, prompb.Label{Name: "__name__", Value: name})
			inserted := le == ""
			for _, l := range base {
				if !inserted && l.Name > "le" {
					labels = append(labels, prompb.Label{Name: "le", Value: le})
					inserted = true
				}
				labels = append(labels, l)
			}
			if !inserted {
				labels = append(labels, prompb.Label{Name: "le", Value: le})
			}
			samples = append(samples, prompb.Sample{Value: v, Timestamp: ts})
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
				Labels:  labels[start:len(labels):len(labels)],
				Samples: samples[len(samples)-1 : len(samples) : len(samples)],
			})
		}
		count := float64(w.v.buckets[nBuckets-1])
		add(callsName, "", count)
		for i, le := range leValues {
			add(durationName+"_bucket", le, float64(w.v.buckets[i]))
		}
		add(durationName+"_sum", "", w.v.sum)
		add(durationName+"_count", "", count)
	}
	return req
}
