package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// families is one scrape of a /metrics endpoint.
type families map[string]*dto.MetricFamily

// scrape reads url (a /metrics endpoint) with the Prometheus text parser.
func scrape(ctx context.Context, url string) (families, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	fams, err := parseFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return fams, nil
}

// parseFamilies reads the Prometheus text format.
func parseFamilies(r io.Reader) (families, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

func hasLabels(m *dto.Metric, match map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := match[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(match)
}

// sum adds the counter, gauge or untyped samples of name whose labels
// include match; an absent metric is 0.
func (f families) sum(name string, match map[string]string) float64 {
	total := 0.0
	for _, m := range f[name].GetMetric() {
		if !hasLabels(m, match) {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Untyped != nil:
			total += m.GetUntyped().GetValue()
		}
	}
	return total
}

// bucket is a cumulative histogram bucket.
type bucket struct {
	le    float64
	count float64
}

// buckets merges the buckets of histogram name over the series whose
// labels include match, with +Inf last.
func (f families) buckets(name string, match map[string]string) []bucket {
	byLE := map[float64]float64{}
	for _, m := range f[name].GetMetric() {
		h := m.GetHistogram()
		if h == nil || !hasLabels(m, match) {
			continue
		}
		for _, b := range h.GetBucket() {
			if !math.IsInf(b.GetUpperBound(), 1) {
				byLE[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			}
		}
		// The text format lists the +Inf bucket, the protobuf format may
		// not: the sample count is both.
		byLE[math.Inf(1)] += float64(h.GetSampleCount())
	}
	out := make([]bucket, 0, len(byLE))
	for le, c := range byLE {
		out = append(out, bucket{le, c})
	}
	slices.SortFunc(out, func(a, b bucket) int {
		switch {
		case a.le < b.le:
			return -1
		case a.le > b.le:
			return 1
		}
		return 0
	})
	return out
}

// histogramQuantile is PromQL's histogram_quantile over cumulative buckets:
// linear interpolation inside the bucket that holds the rank, the lower
// bound for the +Inf bucket. ok is false for an empty histogram.
func histogramQuantile(q float64, bs []bucket) (v float64, ok bool) {
	if len(bs) == 0 || bs[len(bs)-1].count == 0 {
		return 0, false
	}
	rank := q * bs[len(bs)-1].count
	lo, prev := 0.0, 0.0
	for _, b := range bs {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return lo, true
			}
			frac := 1.0
			if b.count > prev {
				frac = (rank - prev) / (b.count - prev)
			}
			return lo + (b.le-lo)*frac, true
		}
		lo, prev = b.le, b.count
	}
	return lo, true
}

// watchSpec says how to follow an ingester sink through a backlog.
type watchSpec struct {
	url  string // the ingester's /metrics
	sink string
	// total ends the watch when the sink has written that many items (0:
	// no such end).
	total float64
	// window ends the watch that long into the measurement (0: none).
	window time.Duration
	// The measurement starts skip after the first record was consumed and
	// once skipItems were written, mirroring the load tool's warmup (0, 0:
	// at the first record, as the bare consumer measures itself).
	skip      time.Duration
	skipItems float64
	timeout   time.Duration
}

// watchResult is what watch measured.
type watchResult struct {
	rate     float64 // items per second
	count    float64 // items written when the watch ended
	caughtUp bool    // count reached total
	polls    int
}

type point struct {
	t time.Time
	c float64
}

// watch polls the ingester's consumed-records and written-items counters of
// the sink every 50 ms until the items reach total, or window into the
// measurement, or they stall for 5 s, or timeout. The measurement ends at
// the last poll before the end: the final partial batch, which waits for
// the batch delay, is not counted.
func watch(ctx context.Context, w watchSpec) watchResult {
	labels := map[string]string{"sink": w.sink}
	t0 := time.Now()
	var points []point
	var start time.Time // first record consumed
	var a *point        // where the measurement starts
	for ctx.Err() == nil {
		now := time.Now()
		var rec, c float64
		if f, err := scrape(ctx, w.url); err == nil {
			rec = f.sum("tributary_ingester_records_consumed_total", labels)
			c = f.sum("tributary_ingester_items_written_total", labels)
		}
		points = append(points, point{now, c})
		if start.IsZero() && (rec > 0 || c > 0) {
			start = now
		}
		if a == nil && !start.IsZero() && !now.Before(start.Add(w.skip)) && c >= w.skipItems {
			if w.skip == 0 && w.skipItems == 0 {
				a = &point{start, 0}
			} else {
				a = &point{now, c}
			}
		}
		if w.total > 0 && c >= w.total {
			break
		}
		if a != nil && w.window > 0 && now.Sub(a.t) >= w.window {
			break
		}
		if c > 0 && len(points) > 100 && points[len(points)-100].c == c {
			break // stalled for 5 s
		}
		if now.Sub(t0) > w.timeout {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return watchRate(points, t0, start, a, w.total)
}

// watchRate computes the rate of a watch from its polls.
func watchRate(points []point, t0, start time.Time, a *point, total float64) watchResult {
	if len(points) == 0 {
		return watchResult{}
	}
	final := points[len(points)-1].c
	res := watchResult{count: final, caughtUp: total > 0 && final >= total, polls: len(points)}
	if a == nil {
		return res
	}
	top := final + 1 // cut by the window: the last poll counts
	if res.caughtUp {
		top = final
	}
	var last *point
	for i := range points {
		if points[i].t.After(a.t) && points[i].c < top {
			last = &points[i]
		}
	}
	switch {
	case last != nil && last.c > a.c:
		res.rate = (last.c - a.c) / last.t.Sub(a.t).Seconds()
	case res.caughtUp:
		// Faster than the polls: from the last poll before consumption to
		// the first that saw the end (a lower bound).
		from := t0
		for _, p := range points {
			if p.t.Before(start) {
				from = p.t
			}
		}
		var end time.Time
		for _, p := range points {
			if p.c == final {
				end = p.t
				break
			}
		}
		if end.After(from) {
			res.rate = final / end.Sub(from).Seconds()
		}
	}
	return res
}

// httpStatus GETs url and returns the status code.
func httpStatus(ctx context.Context, url string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
