package otlpmetrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	prw "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/tributary-io/tributary/pkg/otlp"
)

// ClusterAttribute is the resource attribute that names the cluster.
const ClusterAttribute = "k8s.cluster.name"

// DecodeCost is the memory decoding an OTLP metrics request of n bytes
// may take besides the body (pdata objects, the translator's labels, the
// remote-write request and its snappy copy), for the caller's budget:
// BenchmarkConvert allocates ~29 bytes per body byte in all, of which the
// pdata request and the remote-write request, about half, are live at
// once.
func DecodeCost(n int) int { return 16 * n }

// Reasons a data point is refused, as self-metric label values.
const (
	ReasonDelta         = "delta_temporality"
	ReasonNoTemporality = "no_temporality"
	ReasonNoCluster     = "no_cluster"
	ReasonTranslation   = "translation"
)

// Result is one request converted.
type Result struct {
	// Body is a snappy-compressed prompb.WriteRequest of what was kept;
	// nil when nothing was.
	Body []byte
	// DataPoints counts the request's data points; Rejected those refused,
	// by reason (ByReason), and Message says why, naming the first.
	DataPoints int
	Rejected   int
	ByReason   map[string]int
	Message    string
	// Series and Samples count the remote-write series and samples
	// (floats and histograms) of Body.
	Series, Samples int
}

// Converter converts requests. It keeps buffers between calls and is not
// safe for concurrent use (pool it).
type Converter struct {
	cfg      Config
	settings prw.Settings
	conv     *prw.PrometheusConverter
	app      *writeRequestAppender
}

// NewConverter returns a converter for a validated cfg.
func NewConverter(cfg Config) *Converter {
	pc := cfg.prometheusConfig()
	strategy := pc.TranslationStrategy
	return &Converter{
		cfg: cfg,
		// As Prometheus's OTLP receiver builds its settings from its
		// otlp: section (storage/remote/write_otlp_handler.go).
		settings: prw.Settings{
			AddMetricSuffixes:                 strategy.ShouldAddSuffixes(),
			AllowUTF8:                         !strategy.ShouldEscape(),
			PromoteResourceAttributes:         prw.NewPromoteResourceAttributes(pc),
			KeepIdentifyingResourceAttributes: pc.KeepIdentifyingResourceAttributes,
			ConvertHistogramsToNHCB:           pc.ConvertHistogramsToNHCB,
			PromoteScopeMetadata:              pc.PromoteScopeMetadata,
			AllowDeltaTemporality:             cfg.AllowDeltaTemporality,
			LookbackDelta:                     cfg.LookbackDelta,
		},
		conv: prw.NewPrometheusConverter(nil),
		app:  newWriteRequestAppender(),
	}
}

// refusals collects what a request loses.
type refusals struct {
	res   *Result
	first string
}

func (r *refusals) refuse(n int, reason, msg string) {
	if n == 0 {
		return
	}
	if r.res.ByReason == nil {
		r.res.ByReason = map[string]int{}
	}
	r.res.Rejected += n
	r.res.ByReason[reason] += n
	if r.first == "" {
		r.first = msg
	}
}

// Convert decodes an ExportMetricsServiceRequest (protobuf, or OTLP/JSON
// when isJSON) and converts it. Resources without k8s.cluster.name belong
// to defaultCluster; with it empty, they are refused. A body that does not
// decode is refused whole (400); metrics the translator refuses are left
// out and counted in the result, the rest is converted.
func (c *Converter) Convert(ctx context.Context, body []byte, isJSON bool, defaultCluster string) (Result, error) {
	req := pmetricotlp.NewExportRequest()
	if err := otlp.Decode(req, body, isJSON, "metrics"); err != nil {
		return Result{}, err
	}
	md := req.Metrics()
	res := Result{DataPoints: md.DataPointCount()}
	rf := &refusals{res: &res}
	c.app.reset()
	defer c.conv.Reset(nil)

	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		rm := rms.At(i)
		cluster := defaultCluster
		if v, ok := rm.Resource().Attributes().Get(ClusterAttribute); ok {
			cluster = v.AsString()
		}
		if cluster == "" || !utf8.ValidString(cluster) {
			n := resourceDataPoints(rm)
			msg := "resource without " + ClusterAttribute + ", and neither the cluster header nor -default-cluster is set"
			if cluster != "" {
				msg = "resource with an invalid " + ClusterAttribute
			}
			rf.refuse(n, ReasonNoCluster, fmt.Sprintf("%s (%d data points)", msg, n))
			continue
		}
		c.dropRefused(rm, rf)
		if err := c.convertResource(ctx, rm, cluster, rf); err != nil {
			return Result{}, err
		}
	}
	if rf.first != "" {
		res.Message = fmt.Sprintf("refused %d of %d data points; first: %s", res.Rejected, res.DataPoints, rf.first)
	}
	if len(c.app.series) == 0 {
		return res, nil
	}
	wr := prompb.WriteRequest{Timeseries: c.app.series, Metadata: c.app.metadata}
	raw, err := wr.Marshal()
	if err != nil {
		return Result{}, fmt.Errorf("encode remote-write request: %w", err)
	}
	res.Body = snappy.Encode(nil, raw)
	res.Series, res.Samples = len(c.app.series), c.app.samples
	c.app.reset()
	return res, nil
}

// dropRefused removes the metrics the translator would refuse for their
// temporality, and counts them, so that they are named one by one.
func (c *Converter) dropRefused(rm pmetric.ResourceMetrics, rf *refusals) {
	sms := rm.ScopeMetrics()
	for j := range sms.Len() {
		sms.At(j).Metrics().RemoveIf(func(m pmetric.Metric) bool {
			var t pmetric.AggregationTemporality
			switch m.Type() {
			case pmetric.MetricTypeSum:
				t = m.Sum().AggregationTemporality()
			case pmetric.MetricTypeHistogram:
				t = m.Histogram().AggregationTemporality()
			case pmetric.MetricTypeExponentialHistogram:
				t = m.ExponentialHistogram().AggregationTemporality()
			default:
				return false
			}
			n := metricDataPoints(m)
			switch {
			case t == pmetric.AggregationTemporalityCumulative:
				return false
			case t == pmetric.AggregationTemporalityDelta && c.cfg.AllowDeltaTemporality:
				return false
			case t == pmetric.AggregationTemporalityDelta:
				rf.refuse(n, ReasonDelta, fmt.Sprintf("metric %q has delta temporality, which the gateway does not convert to cumulative: export it with cumulative temporality (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=cumulative), or start the gateway with -otlp.metrics.allow-delta-temporality", m.Name()))
			default:
				rf.refuse(n, ReasonNoTemporality, fmt.Sprintf("metric %q has no aggregation temporality", m.Name()))
			}
			return true
		})
	}
}

// convertResource converts one resource's metrics with the cluster label
// set to cluster. When the translator fails, each metric is converted
// alone to find the ones it refuses; those are left out and counted, and
// the rest converted again.
func (c *Converter) convertResource(ctx context.Context, rm pmetric.ResourceMetrics, cluster string, rf *refusals) error {
	one := pmetric.NewMetrics()
	rm.MoveTo(one.ResourceMetrics().AppendEmpty())
	rm = one.ResourceMetrics().At(0)
	c.app.cluster = cluster
	mark, samples := len(c.app.series), c.app.samples
	settings := c.settings
	if !settings.DisableTargetInfo && targetInfoSamples(rm, settings.LookbackDelta) > maxTargetInfoSamples {
		// The translator writes one target_info sample every half lookback
		// between the resource's earliest and latest data point: points 54
		// years apart (a timestamp left at 0 next to a current one) took
		// 11M samples, 46 s and 2.7 GB from a 1.3 KB request. Such a
		// resource keeps its data points and goes without target_info.
		settings.DisableTargetInfo = true
	}
	c.conv.Reset(c.app)
	_, err := c.conv.FromMetrics(ctx, one, settings)
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	c.app.truncate(mark, samples)
	sms := rm.ScopeMetrics()
	for j := range sms.Len() {
		sm := sms.At(j)
		sm.Metrics().RemoveIf(func(m pmetric.Metric) bool {
			alone := pmetric.NewMetrics()
			r := alone.ResourceMetrics().AppendEmpty()
			rm.Resource().CopyTo(r.Resource())
			s := r.ScopeMetrics().AppendEmpty()
			sm.Scope().CopyTo(s.Scope())
			s.SetSchemaUrl(sm.SchemaUrl())
			m.CopyTo(s.Metrics().AppendEmpty())
			c.conv.Reset(discardAppender{})
			if _, err := c.conv.FromMetrics(ctx, alone, settings); err != nil {
				rf.refuse(metricDataPoints(m), ReasonTranslation, fmt.Sprintf("metric %q: %s", m.Name(), oneLine(err)))
				return true
			}
			return false
		})
	}
	c.conv.Reset(c.app)
	if _, err := c.conv.FromMetrics(ctx, one, settings); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		// Not one metric's fault: the resource's own attributes.
		c.app.truncate(mark, samples)
		n := resourceDataPoints(rm)
		rf.refuse(n, ReasonTranslation, fmt.Sprintf("resource of %d data points: %s", n, oneLine(err)))
	}
	return nil
}

func oneLine(err error) string {
	var msgs []string
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			msgs = append(msgs, e.Error())
		}
	} else {
		msgs = []string{err.Error()}
	}
	return strings.Join(msgs, "; ")
}

// maxTargetInfoSamples bounds the target_info samples of one resource: 64
// half-lookback steps are 2 h 40 min of data points at the default 5 m
// lookback, more than any batching exporter holds back.
const maxTargetInfoSamples = 64

// targetInfoSamples is how many target_info samples the translator would
// write for the resource: one every lookback/2 from its earliest to its
// latest data point (every point counted, so never fewer than it writes).
func targetInfoSamples(rm pmetric.ResourceMetrics, lookback time.Duration) int64 {
	if lookback <= 0 {
		lookback = 5 * time.Minute // the translator's default
	}
	var lo, hi pcommon.Timestamp
	seen := false
	see := func(ts pcommon.Timestamp) {
		if !seen || ts < lo {
			lo = ts
		}
		if !seen || ts > hi {
			hi = ts
		}
		seen = true
	}
	sms := rm.ScopeMetrics()
	for j := range sms.Len() {
		ms := sms.At(j).Metrics()
		for k := range ms.Len() {
			eachTimestamp(ms.At(k), see)
		}
	}
	if !seen {
		return 0
	}
	return int64(time.Duration(hi-lo)/(lookback/2)) + 1
}

func eachTimestamp(m pmetric.Metric, f func(pcommon.Timestamp)) {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		eachPointTime(m.Gauge().DataPoints(), f)
	case pmetric.MetricTypeSum:
		eachPointTime(m.Sum().DataPoints(), f)
	case pmetric.MetricTypeHistogram:
		eachPointTime(m.Histogram().DataPoints(), f)
	case pmetric.MetricTypeExponentialHistogram:
		eachPointTime(m.ExponentialHistogram().DataPoints(), f)
	case pmetric.MetricTypeSummary:
		eachPointTime(m.Summary().DataPoints(), f)
	}
}

// pointSlice is any of pdata's data point slices.
type pointSlice[P interface{ Timestamp() pcommon.Timestamp }] interface {
	Len() int
	At(int) P
}

// eachPointTime calls f with each point's timestamp. The slice is a type
// parameter, not an interface argument: no boxing per metric.
func eachPointTime[S pointSlice[P], P interface{ Timestamp() pcommon.Timestamp }](dps S, f func(pcommon.Timestamp)) {
	for i := range dps.Len() {
		f(dps.At(i).Timestamp())
	}
}

func resourceDataPoints(rm pmetric.ResourceMetrics) int {
	n := 0
	sms := rm.ScopeMetrics()
	for j := range sms.Len() {
		ms := sms.At(j).Metrics()
		for k := range ms.Len() {
			n += metricDataPoints(ms.At(k))
		}
	}
	return n
}

func metricDataPoints(m pmetric.Metric) int {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		return m.Gauge().DataPoints().Len()
	case pmetric.MetricTypeSum:
		return m.Sum().DataPoints().Len()
	case pmetric.MetricTypeHistogram:
		return m.Histogram().DataPoints().Len()
	case pmetric.MetricTypeExponentialHistogram:
		return m.ExponentialHistogram().DataPoints().Len()
	case pmetric.MetricTypeSummary:
		return m.Summary().DataPoints().Len()
	}
	return 0
}
