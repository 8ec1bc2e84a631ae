package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/tributary-io/tributary/pkg/limits"
	"github.com/tributary-io/tributary/pkg/lokipush"
	"github.com/tributary-io/tributary/pkg/otlp"
	"github.com/tributary-io/tributary/pkg/remotewrite"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// SetTokenLimits replaces the per-cluster limits that come from tokens.yaml
// (cluster → limits), called whenever that file is (re)loaded. They win
// over the limits file's entry for the same cluster, field by field; the
// file's entry wins over its defaults, and those over the flags.
func (g *Gateway) SetTokenLimits(m map[string]limits.Cluster) {
	g.limits.SetTokens(m)
}

// rateSignals are the handlers' signal names and what their rate counts.
var rateSignals = map[string]limits.Signal{"metrics": limits.Samples, "logs": limits.LogBytes, "spans": limits.Spans}

func rateSignal(s recordpb.Signal) limits.Signal {
	switch s {
	case recordpb.Signal_SIGNAL_LOGS:
		return limits.LogBytes
	case recordpb.Signal_SIGNAL_SPANS:
		return limits.Spans
	}
	return limits.Samples
}

// admitRate refuses a request whose part for some cluster exceeds that
// cluster's per-request bound on series, streams or spans (413), or its
// rate (429 with the wait; 413 beyond the burst). It runs after parsing,
// when each record's cluster is known; admitEarly has already refused a
// cluster known before the body was read whose bucket was empty.
//
// What a rate counts: samples (histogram samples included), decoded log
// line bytes (what Loki's ingestion_rate_mb counts, and what a sender
// controls; the record's compressed size depends on the gateway's
// encoding), spans.
func (g *Gateway) admitRate(_ context.Context, signal recordpb.Signal, recs []outRecord) error {
	if !g.limits.Active() {
		return nil
	}
	s := rateSignal(signal)
	costs, units := costsOf(s, recs)
	for i, c := range costs {
		lim := g.limits.For(c.Cluster)
		name, max := "max_series_per_request", lim.MaxSeriesPerRequest
		switch s {
		case limits.LogBytes:
			name, max = "max_streams_per_request", lim.MaxStreamsPerRequest
		case limits.Spans:
			name, max = "max_spans_per_request", lim.MaxSpansPerRequest
		}
		if max > 0 && units[i] > max {
			return limits.RequestError(c.Cluster, name, units[i], max)
		}
	}
	return g.limits.Take(s, costs)
}

// costsOf sums recs by cluster: what each cluster's bucket for s pays,
// and the series, streams or spans per-request bounds count.
func costsOf(s limits.Signal, recs []outRecord) (costs []limits.Cost, units []int) {
	costs, units = make([]limits.Cost, 0, 1), make([]int, 0, 1)
	for _, r := range recs {
		n := r.items
		if s == limits.LogBytes {
			n = r.lineBytes
		}
		i := 0
		for i < len(costs) && costs[i].Cluster != r.cluster {
			i++
		}
		if i == len(costs) {
			costs = append(costs, limits.Cost{Cluster: r.cluster})
			units = append(units, 0)
		}
		costs[i].N += n
		units[i] += r.units
	}
	return costs, units
}

// refundRate gives back what admitRate took for recs when they were not
// written (Kafka failed): the client keeps its data and retries, and must
// not pay for it twice.
func (g *Gateway) refundRate(signal recordpb.Signal, recs []outRecord) {
	if !g.limits.Active() {
		return
	}
	s := rateSignal(signal)
	costs, _ := costsOf(s, recs)
	g.limits.Refund(s, costs)
}

// admitEarly refuses a request at once, before its body is read, when the
// cluster it comes from (cluster header, -default-cluster or identity) has
// an empty bucket for signal: a noisy cluster's refused requests cost no
// body reads, decoding or in-flight budget. Data labelled with other
// clusters in such a request is refused with it: the sender names itself.
func (g *Gateway) admitEarly(signal, cluster string) error {
	s, ok := rateSignals[signal]
	if !ok || cluster == "" || !g.limits.Active() {
		return nil
	}
	return g.limits.Admit(s, cluster)
}

// retryAfter is the wait to announce with a 429 or 503: the rate limit's
// own when err is one, else -retry-after.
func (g *Gateway) retryAfter(err error) time.Duration {
	if e, ok := limits.AsError(err); ok && e.RetryAfter > 0 {
		return e.RetryAfter
	}
	return g.cfg.RetryAfter
}

// remoteWriteLimits are the parser's limits for a request from cluster
// ("" when only the body will tell: the limits file's defaults).
func (g *Gateway) remoteWriteLimits(cluster string) remotewrite.Limits {
	lim := g.cfg.RemoteWrite
	c := g.limits.For(cluster)
	override(&lim.MaxLabelsPerSeries, c.MaxLabelsPerSeries)
	override(&lim.MaxLabelNameLen, c.MaxLabelNameLength)
	override(&lim.MaxLabelValueLen, c.MaxLabelValueLength)
	lim.MaxClusters = g.cfg.MaxClustersPerRequest
	return lim
}

// logsLimits is remoteWriteLimits for Loki pushes.
func (g *Gateway) logsLimits(cluster string) lokipush.Limits {
	lim := g.cfg.Logs
	c := g.limits.For(cluster)
	override(&lim.MaxLabelNamesPerStream, c.MaxLabelsPerSeries)
	override(&lim.MaxLabelNameLen, c.MaxLabelNameLength)
	override(&lim.MaxLabelValueLen, c.MaxLabelValueLength)
	override(&lim.MaxLineBytes, c.MaxLineBytes)
	return lim
}

// spanLimits is remoteWriteLimits for OTLP traces.
func (g *Gateway) spanLimits(cluster string) otlp.Limits {
	lim := g.cfg.Spans
	c := g.limits.For(cluster)
	override(&lim.MaxAttributes, c.MaxSpanAttributes)
	override(&lim.MaxAttributeValueLen, c.MaxSpanAttributeValueLength)
	lim.MaxClusters = g.cfg.MaxClustersPerRequest
	return lim
}

func override(v *int, c int) {
	if c > 0 {
		*v = c
	}
}

// refusals counts refused write requests by signal, cluster and reason.
type refusals struct {
	vec *clusterCounterVec
}

func newRefusals(reg prometheus.Registerer, clusters *clusterSet, l *limits.Limiter) *refusals {
	f := promauto.With(reg)
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tributary_gateway_limits_buckets",
		Help: "Per-cluster rate-limit token buckets held (one per cluster with a rate and signal; refilled ones are dropped when room is needed).",
	}, func() float64 { return float64(l.Buckets()) })
	return &refusals{vec: &clusterCounterVec{clusters: clusters, vec: f.NewCounterVec(prometheus.CounterOpts{
		Name: "tributary_gateway_refused_total",
		Help: "Write requests refused, by signal, cluster (the limit's cluster, else the cluster header or -default-cluster; \"_unknown\" without; the first -metrics.max-clusters clusters, then \"_other\") and reason: the per-cluster limit's name (samples_per_second, samples_burst, max_series_per_request, ...), or invalid (400), unauthenticated (401), forbidden (403), too_large (413), unsupported (415), overloaded (in-flight budget spent).",
	}, []string{"signal", "cluster", "reason"})}}
}

// count counts a refusal with status code for err, if it is one (4xx, or
// the in-flight budget spent); failures (5xx) are not refusals. cluster is
// the request's cluster as known before parsing (header or default).
func (r *refusals) count(signal, cluster string, code int, err error) {
	reason := ""
	switch e, ok := limits.AsError(err); {
	case ok:
		reason, cluster = e.Limit, e.Cluster
	case errors.Is(err, errOverloaded):
		reason = "overloaded"
	default:
		reason = map[int]string{
			http.StatusBadRequest: "invalid", http.StatusUnauthorized: "unauthenticated", http.StatusForbidden: "forbidden",
			http.StatusRequestEntityTooLarge: "too_large", http.StatusUnsupportedMediaType: "unsupported", http.StatusTooManyRequests: "rate_limited",
		}[code]
	}
	if reason == "" {
		return
	}
	if cluster == "" || len(cluster) > 256 || !utf8.ValidString(cluster) {
		cluster = "_unknown"
	}
	r.vec.WithLabelValues(signal, cluster, reason).Inc()
}

// requestCluster is the cluster a request comes from as known before its
// body is read: its identity's, else its cluster header's (v), else
// -default-cluster.
func (g *Gateway) requestCluster(ctx context.Context, v string) string {
	if st, _ := ctx.Value(authStateKey{}).(*authState); st != nil && st.id != nil {
		return st.id.Cluster
	}
	if v == "" {
		return g.cfg.DefaultCluster
	}
	return v
}

// initLimits builds the refusal metrics and loads -limits.file (Validate
// has parsed it once already: a failure here is a file changed since).
func (g *Gateway) initLimits(reg prometheus.Registerer, log *slog.Logger) {
	g.refused = newRefusals(reg, g.metrics.items.clusters, g.limits)
	if g.cfg.LimitsFile == "" {
		return
	}
	g.reloader = limits.NewReloader(g.cfg.LimitsFile, g.cfg.LimitsPollInterval, g.limits, reg, log)
	if err := g.reloader.Load(); err != nil {
		log.Error("limits file: starting without per-cluster limits until it loads", "file", g.cfg.LimitsFile, "err", err)
	}
}

// reloadLimits polls -limits.file until ctx ends.
func (g *Gateway) reloadLimits(ctx context.Context) {
	if g.reloader != nil {
		g.reloader.Run(ctx)
	}
}
