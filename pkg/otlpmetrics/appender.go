package otlpmetrics

import (
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
)

// writeRequestAppender is the storage.AppenderV2 the translator writes
// into: it collects a remote-write 1.0 request instead of writing a TSDB,
// with the cluster label set on every series.
type writeRequestAppender struct {
	cluster  string
	series   []prompb.TimeSeries
	metadata []prompb.MetricMetadata
	families map[string]bool // metadata already added
	builder  *labels.Builder
	// last and lastCluster are the labels of series[len-1], before the
	// cluster label, and its cluster: samples of the same series in a row
	// share one TimeSeries.
	last        labels.Labels
	lastCluster string
	samples     int // float samples, histogram samples
}

func newWriteRequestAppender() *writeRequestAppender {
	return &writeRequestAppender{families: map[string]bool{}, builder: labels.NewBuilder(labels.EmptyLabels())}
}

func (a *writeRequestAppender) reset() {
	a.series, a.metadata, a.last, a.samples = nil, nil, labels.EmptyLabels(), 0
	clear(a.families)
}

// truncate drops what was appended after the mark (len(a.series)).
func (a *writeRequestAppender) truncate(mark, samples int) {
	a.series = a.series[:mark]
	a.samples = samples
	a.last = labels.EmptyLabels()
}

// ClusterLabel is the label that names the sending cluster.
const ClusterLabel = "cluster"

func (a *writeRequestAppender) Append(_ storage.SeriesRef, ls labels.Labels, _, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	if len(a.series) == 0 || a.cluster != a.lastCluster || !labels.Equal(ls, a.last) {
		a.last, a.lastCluster = ls, a.cluster
		a.builder.Reset(ls)
		// The cluster is the sender's identity: set over any data point
		// attribute of the same name.
		a.builder.Set(ClusterLabel, a.cluster)
		a.series = append(a.series, prompb.TimeSeries{Labels: prompb.FromLabels(a.builder.Labels(), nil)})
	}
	ts := &a.series[len(a.series)-1]
	switch {
	case fh != nil:
		ts.Histograms = append(ts.Histograms, prompb.FromFloatHistogram(t, fh))
	case h != nil:
		ts.Histograms = append(ts.Histograms, prompb.FromIntHistogram(t, h))
	default:
		ts.Samples = append(ts.Samples, prompb.Sample{Value: v, Timestamp: t})
	}
	a.samples++
	for _, e := range opts.Exemplars {
		ts.Exemplars = append(ts.Exemplars, prompb.Exemplar{Labels: prompb.FromLabels(e.Labels, nil), Value: e.Value, Timestamp: e.Ts})
	}
	if name := opts.MetricFamilyName; name != "" && !a.families[name] {
		a.families[name] = true
		md := opts.Metadata
		a.metadata = append(a.metadata, prompb.MetricMetadata{
			Type: prompb.FromMetadataType(md.Type), MetricFamilyName: name, Help: md.Help, Unit: md.Unit,
		})
	}
	return storage.SeriesRef(len(a.series)), nil
}

func (a *writeRequestAppender) Commit() error   { return nil }
func (a *writeRequestAppender) Rollback() error { return nil }

// discardAppender is where a metric converted alone, to find why a
// resource failed, is written.
type discardAppender struct{}

func (discardAppender) Append(storage.SeriesRef, labels.Labels, int64, int64, float64, *histogram.Histogram, *histogram.FloatHistogram, storage.AppendV2Options) (storage.SeriesRef, error) {
	return 1, nil
}
func (discardAppender) Commit() error   { return nil }
func (discardAppender) Rollback() error { return nil }
