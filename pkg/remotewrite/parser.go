// Package remotewrite is the gateway side of Prometheus remote-write: it
// validates a snappy-compressed prometheus.WriteRequest (1.0) without
// building prompb objects and turns it into Kafka record values keyed by
// cluster. Remote-write 2.0 requests are converted to the same 1.0 records
// (ParseV2), so nothing downstream changes.
//
// When a request needs no rewriting (every series already carries the same
// cluster label, labels are sorted, nothing is refused, and it fits one
// record), the record value is the request body exactly as received.
// Otherwise the request is re-encoded: split by cluster, the default cluster
// label inserted, labels sorted, refused series and samples left out, and
// cut into records no larger than Limits.MaxRecordBytes.
//
// Like Prometheus's own receiver, a request is accepted in part: series
// with invalid labels and samples outside the time window are left out and
// counted (Parser.Refused), the rest is written. A request that is not a
// WriteRequest as a whole (bad snappy, malformed protobuf, wrong wire
// types, too many clusters) is refused whole.
package remotewrite

import (
	"bytes"
	"errors"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tributary-io/tributary/pkg/reject"
	"github.com/tributary-io/tributary/pkg/shard"
	"github.com/tributary-io/tributary/pkg/split"
)

// ClusterLabel is the label that names the sending cluster.
const ClusterLabel = "cluster"

// Field numbers of prometheus.WriteRequest and its children.
const (
	fWriteRequestTimeseries = 1
	fWriteRequestMetadata   = 3
	fSeriesLabels           = 1
	fSeriesSamples          = 2
	fSeriesExemplars        = 3
	fSeriesHistograms       = 4
	fLabelName              = 1
	fLabelValue             = 2
	fSampleValue            = 1
	fSampleTimestamp        = 2
	fExemplarLabels         = 1
	fExemplarTimestamp      = 3
	fHistogramNegSpans      = 8
	fHistogramPosSpans      = 11
	fHistogramTimestamp     = 15
)

// Limits bound what one request may cost and what it may contain. Sizes
// are checked before the corresponding allocation.
type Limits struct {
	MaxDecodedBytes    int `yaml:"max_decoded_bytes"`
	MaxRecordBytes     int `yaml:"max_record_bytes"`
	MaxLabelsPerSeries int `yaml:"max_labels_per_series"`
	MaxLabelNameLen    int `yaml:"max_label_name_length"`
	MaxLabelValueLen   int `yaml:"max_label_value_length"`
	// MaxSampleAge and MaxFuture bound sample, histogram and exemplar
	// timestamps against the gateway's clock; 0 turns a bound off.
	MaxSampleAge time.Duration `yaml:"max_sample_age"`
	MaxFuture    time.Duration `yaml:"max_future"`
	// UTF8Names accepts any valid UTF-8 metric and label name, as
	// Prometheus 3 does; off, names must match the classic
	// [a-zA-Z_:][a-zA-Z0-9_:]* (labels without ':'), which Prometheus 2.x
	// sinks require.
	UTF8Names bool `yaml:"utf8_names"`
	// MaxClusters bounds the distinct clusters of one request (the
	// gateway's -limits.max-clusters-per-request); <= 0:
	// split.DefaultMaxClusters.
	MaxClusters int `yaml:"-"`
	// OverrideCluster makes the default cluster replace every series'
	// cluster label that names another cluster (the sender's identity
	// wins: -auth.cluster-mismatch=overwrite).
	OverrideCluster bool `yaml:"-"`
	// Sharder spreads hot clusters' series over several records (one per
	// shard) by a hash of their labels; nil: one shard per cluster.
	Sharder Sharder `yaml:"-"`
}

// Sharder says over how many shards (partitions) a cluster's series are
// spread; 1 for most.
type Sharder interface {
	Shards(cluster string) int
}

// Defaults of the time window.
//
// A Prometheus sink configured as the README says (out_of_order_time_window:
// 1d) refuses for ever a sample older than its head's newest timestamp
// minus one day ("too old sample": 500 from Prometheus 2.x, 400 from 3.x),
// and Prometheus 3 refuses one more than 10 minutes ahead of its clock
// (maxAheadTime in storage/remote/write_handler.go). The head's newest
// timestamp can itself be up to MaxFuture ahead, and records wait in Kafka
// while the ingester catches up, so the age bound stays an hour inside the
// sink's day: 24h - 10m future - ~50m of ingester lag.
const (
	DefaultMaxSampleAge = 23 * time.Hour
	DefaultMaxFuture    = 10 * time.Minute
)

// DefaultLimits are generous for stock Prometheus senders (a default
// remote_write request is 2000 samples, ~100-300 KiB decoded).
func DefaultLimits() Limits {
	return Limits{
		MaxDecodedBytes:    32 << 20,  // 32 MiB: 100x a default Prometheus request
		MaxRecordBytes:     900 << 10, // below Kafka's default 1 MB message.max.bytes, with room for headers
		MaxLabelsPerSeries: 64,        // Mimir's default is 30; allow more, the sink decides
		MaxLabelNameLen:    1024,
		MaxLabelValueLen:   4096,
		MaxSampleAge:       DefaultMaxSampleAge,
		MaxFuture:          DefaultMaxFuture,
	}
}

// Batch is one Kafka record's worth of a request: a snappy-compressed
// WriteRequest whose series all belong to Cluster, and to its shard Shard
// (0 unless Limits.Sharder spreads the cluster).
type Batch struct {
	Cluster    string
	Shard      int
	Value      []byte
	Series     int
	Samples    int // float samples + histogram samples
	Histograms int // of which histogram samples
	Exemplars  int
}

type seriesInfo struct {
	start, end int // TimeSeries payload in the decoded request
	group      int // cluster: index into the Grouper's names
	shard      int // of the cluster's shards (Limits.Sharder), by the labels' hash
	hasCluster bool
	// dropCluster: the series' own cluster label is replaced by the
	// default cluster (Limits.OverrideCluster).
	dropCluster bool
	sorted      bool
	partial     bool // some samples are outside the time window
	samples     int  // kept float samples
	histograms  int  // kept histogram samples
	exemplars   int  // kept exemplars
}

// Parser validates and splits requests. It keeps its buffers between calls;
// it is not safe for concurrent use (pool it).
type Parser struct {
	decoded          []byte
	series           []seriesInfo
	metadata         [][2]int
	batches          []Batch
	groups           split.Grouper
	names            [][]byte // scratch for sorting label names
	raw              []byte   // scratch for re-encoding
	labels           []labelSpan
	order            []int // series indexes ordered by bucket (rewrite)
	groupStart, fill []int // per bucket (rewrite)
	groupBucket      []int // per group: its first bucket (rewrite)
	refused          Refusal
	lim              Limits
	minT             int64  // oldest timestamp accepted, ms
	maxT             int64  // newest timestamp accepted, ms
	lastCluster      []byte // the last series' cluster label, and its group
	lastGroup        int
	groupShards      []int // per group: its cluster's shard count (Limits.Sharder)

	metadataDropped int
	now             func() time.Time // tests
}

// maxKeptBuffer bounds the decode buffer a pooled Parser keeps, so one huge
// request does not pin its memory forever.
const maxKeptBuffer = 4 << 20

// Parse validates body (snappy-compressed WriteRequest) and returns its
// records. The returned slice and the Batch values are valid until the next
// call; Value may alias body. defaultCluster is used for series without a
// cluster label; if it is empty such series are refused.
//
// An error refuses the whole request. Otherwise the records hold what was
// accepted, and Refused says what was left out.
func (p *Parser) Parse(body []byte, defaultCluster string, lim Limits) ([]Batch, error) {
	p.reset()
	dec, err := p.decode(body, lim)
	if err != nil {
		return nil, err
	}
	defer p.trim()
	return p.parseDecoded(dec, body, defaultCluster, lim)
}

func (p *Parser) reset() {
	p.refused = Refusal{}
	p.metadataDropped = 0
	p.batches = p.batches[:0]
}

func (p *Parser) trim() {
	if cap(p.decoded) > maxKeptBuffer {
		p.decoded = nil
	}
	if cap(p.raw) > maxKeptBuffer {
		p.raw = nil
	}
}

func (p *Parser) decode(body []byte, lim Limits) ([]byte, error) {
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return nil, snappyError(err)
	}
	if n > lim.MaxDecodedBytes {
		return nil, reject.TooLarge("decoded body of %d bytes exceeds the limit of %d (-limits.max-decoded-bytes)", n, lim.MaxDecodedBytes)
	}
	if cap(p.decoded) < n {
		p.decoded = make([]byte, n)
	}
	dec, err := snappy.Decode(p.decoded[:cap(p.decoded)], body)
	if err != nil {
		return nil, snappyError(err)
	}
	return dec, nil
}

// snappyError words a snappy failure once: the package's own errors already
// start with "snappy: ".
func snappyError(err error) error {
	return reject.BadRequest("body is not a snappy block: %s", strings.TrimPrefix(err.Error(), "snappy: "))
}

// Refused describes what the last Parse left out of its records, or nil
// when it kept everything. Valid until the next call.
func (p *Parser) Refused() *Refusal {
	if p.refused.Items() == 0 && p.refused.Series == 0 {
		return nil
	}
	return &p.refused
}

// MetadataDropped is the number of metadata entries the last Parse dropped
// because the request had no series and no default cluster to carry them.
func (p *Parser) MetadataDropped() int { return p.metadataDropped }

// parseDecoded walks dec and builds the records. body, when not nil, is the
// compressed form of dec, forwarded as is when nothing needs rewriting.
func (p *Parser) parseDecoded(dec, body []byte, defaultCluster string, lim Limits) ([]Batch, error) {
	if len(defaultCluster) > lim.MaxLabelValueLen || !utf8.ValidString(defaultCluster) {
		return nil, reject.BadRequest("invalid default cluster %q", defaultCluster)
	}
	if err := p.walk(dec, defaultCluster, lim); err != nil {
		var m *malformedError
		if errors.As(err, &m) {
			return nil, reject.BadRequest("%s", m.Error())
		}
		return nil, err
	}
	if len(p.series) == 0 && len(p.metadata) == 0 {
		return p.batches, nil
	}
	if body != nil && p.forwardable(body, lim) {
		b := Batch{Cluster: p.groups.Names()[0], Shard: p.series[0].shard, Value: body, Series: len(p.series)}
		for i := range p.series {
			s := &p.series[i]
			b.Samples += s.samples + s.histograms
			b.Histograms += s.histograms
			b.Exemplars += s.exemplars
		}
		p.batches = append(p.batches, b)
		return p.batches, nil
	}
	if len(p.series) == 0 {
		// Metadata without series: it belongs to no series, so to the
		// default cluster. Without one it is dropped, not refused: stock
		// Prometheus sends metadata-only requests every minute, external
		// labels never reach them, and its own receiver ignores 1.0
		// metadata anyway (write_handler.go never reads
		// WriteRequest.Metadata).
		if defaultCluster == "" {
			p.metadataDropped = len(p.metadata)
			return p.batches, nil
		}
		if _, err := p.groups.GroupString(defaultCluster); err != nil {
			return nil, err
		}
	}
	if err := p.rewrite(dec, lim); err != nil {
		return nil, err
	}
	return p.batches, nil
}

// forwardable reports whether body can be the record value unchanged.
func (p *Parser) forwardable(body []byte, lim Limits) bool {
	if len(body) > lim.MaxRecordBytes || len(p.series) == 0 || p.groups.Len() != 1 || p.Refused() != nil {
		return false
	}
	for i := range p.series {
		s := &p.series[i]
		if !s.hasCluster || !s.sorted || s.shard != p.series[0].shard {
			return false
		}
	}
	return true
}

// walk validates the decoded WriteRequest and records per-series facts.
// Series it refuses are counted in p.refused and not kept.
func (p *Parser) walk(b []byte, defaultCluster string, lim Limits) error {
	p.series = p.series[:0]
	p.metadata = p.metadata[:0]
	p.groups.Reset(lim.MaxClusters)
	p.lastCluster, p.lastGroup = nil, -1
	p.groupShards = p.groupShards[:0]
	p.lim = lim
	p.setWindow(lim)
	index := 0
	for i := 0; i < len(b); {
		num, typ, start, end, next := field(b, i)
		if next < 0 {
			return fieldError(b, i, 0)
		}
		switch num {
		case fWriteRequestTimeseries:
			if typ != protowire.BytesType {
				return wrongType(i, "WriteRequest.timeseries", typ)
			}
			s, keep, err := p.walkSeries(b[start:end], start, index, defaultCluster)
			if err != nil {
				return err
			}
			if keep {
				s.start, s.end = start, end
				p.series = append(p.series, s)
			}
			index++
		case fWriteRequestMetadata:
			if typ != protowire.BytesType {
				return wrongType(i, "WriteRequest.metadata", typ)
			}
			if err := checkFields(b[start:end], start); err != nil {
				return err
			}
			p.metadata = append(p.metadata, [2]int{i, next})
		}
		i = next
	}
	return nil
}

func (p *Parser) setWindow(lim Limits) {
	now := time.Now
	if p.now != nil {
		now = p.now
	}
	t := now()
	p.minT, p.maxT = -1<<63, 1<<63-1
	if lim.MaxSampleAge > 0 {
		p.minT = t.Add(-lim.MaxSampleAge).UnixMilli()
	}
	if lim.MaxFuture > 0 {
		p.maxT = t.Add(lim.MaxFuture).UnixMilli()
	}
}

// inWindow is 0 for a timestamp the sinks accept, else the refusal reason.
func (p *Parser) inWindow(ts int64) reason {
	switch {
	case ts < p.minT:
		return reasonTooOld
	case ts > p.maxT:
		return reasonTooNew
	}
	return 0
}

// exemplarInWindow is inWindow for an exemplar: one without a timestamp
// (0) is kept, sinks take it as "no timestamp" (Prometheus's HasTs).
func (p *Parser) exemplarInWindow(ts int64) reason {
	if ts == 0 {
		return 0
	}
	return p.inWindow(ts)
}

var (
	nameChar   [256]bool
	nameStart  [256]bool
	metricChar [256]bool
)

func init() {
	for c := 0; c < 256; c++ {
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
		nameStart[c] = alpha
		nameChar[c] = alpha || c >= '0' && c <= '9'
		metricChar[c] = nameChar[c] || c == ':'
	}
}

var clusterLabel = []byte(ClusterLabel)

// walkSeries validates one TimeSeries at b (offset base in the request, the
// index-th series). A malformed series refuses the request (error); a
// series with invalid labels is counted as refused and not kept;
// samples outside the time window are counted and the series is kept,
// marked partial, when anything of it remains.
func (p *Parser) walkSeries(b []byte, base, index int, defaultCluster string) (s seriesInfo, keep bool, err error) {
	lim := &p.lim
	s.sorted = true
	var (
		prev, cluster []byte
		labels        int
		unsorted      bool
		hasName       bool
		bad           reason // why the series is refused
		badMsg        string
		outside       [3]int // samples, histograms, exemplars outside the window
		firstOutside  reason
		firstTs       int64
		histErr       string // why the first refused histogram is invalid
	)
	refuse := func(r reason, msg string) {
		if bad == 0 {
			bad, badMsg = r, msg
		}
	}
	for i := 0; i < len(b); {
		num, typ, start, end, next := field(b, i)
		if next < 0 {
			return s, false, fieldError(b, i, base)
		}
		switch num {
		case fSeriesLabels:
			if typ != protowire.BytesType {
				return s, false, wrongType(base+i, "TimeSeries.labels", typ)
			}
			name, value, err := label(b[start:end], base+start)
			if err != nil {
				return s, false, err
			}
			labels++
			if bad != 0 {
				break
			}
			if labels > lim.MaxLabelsPerSeries {
				refuse(reasonLimit, "more than "+strconv.Itoa(lim.MaxLabelsPerSeries)+" labels (-limits.max-labels-per-series)")
				break
			}
			if r, msg := p.checkLabel(name, value); r != 0 {
				refuse(r, msg)
				break
			}
			if prev != nil {
				switch c := bytes.Compare(prev, name); {
				case c == 0:
					refuse(reasonLabels, "duplicate label name "+quote(name))
				case c > 0:
					unsorted = true
				}
			}
			prev = name
			switch {
			case len(name) == len("__name__") && string(name) == "__name__":
				if len(value) == 0 {
					refuse(reasonLabels, "empty metric name")
				} else if !p.validMetricName(value) {
					refuse(reasonLabels, "invalid metric name "+quote(value)+p.utf8Hint())
				}
				hasName = true
			case len(name) == len(ClusterLabel) && string(name) == ClusterLabel:
				if len(value) == 0 {
					refuse(reasonLabels, "empty "+ClusterLabel+" label")
				}
				if lim.OverrideCluster && string(value) != defaultCluster {
					s.dropCluster = true
				} else {
					s.hasCluster = true
					cluster = value
				}
			}
		case fSeriesSamples:
			if typ != protowire.BytesType {
				return s, false, wrongType(base+i, "TimeSeries.samples", typ)
			}
			ts, err := sampleTimestamp(b[start:end], base+start)
			if err != nil {
				return s, false, err
			}
			if r := p.inWindow(ts); r != 0 {
				if firstOutside == 0 {
					firstOutside, firstTs = r, ts
				}
				outside[0]++
				break
			}
			s.samples++
		case fSeriesHistograms:
			if typ != protowire.BytesType {
				return s, false, wrongType(base+i, "TimeSeries.histograms", typ)
			}
			ts, err := histogramTimestamp(b[start:end], base+start)
			if err != nil {
				return s, false, err
			}
			r := p.inWindow(ts)
			if r == 0 {
				if err := validHistogram(b[start:end]); err != nil {
					r = reasonHistogram
					if firstOutside == 0 {
						histErr = err.Error()
					}
				}
			}
			if r != 0 {
				if firstOutside == 0 {
					firstOutside, firstTs = r, ts
				}
				outside[1]++
				break
			}
			s.histograms++
		case fSeriesExemplars:
			if typ != protowire.BytesType {
				return s, false, wrongType(base+i, "TimeSeries.exemplars", typ)
			}
			ts, err := exemplarTimestamp(b[start:end], base+start)
			if err != nil {
				return s, false, err
			}
			if r := p.exemplarInWindow(ts); r != 0 {
				if firstOutside == 0 {
					firstOutside, firstTs = r, ts
				}
				outside[2]++
				break
			}
			s.exemplars++
		}
		i = next
	}
	if bad == 0 {
		switch {
		case labels == 0:
			refuse(reasonLabels, "no labels")
		case !hasName:
			refuse(reasonLabels, "no __name__ label")
		case unsorted:
			s.sorted = false
			if name := p.duplicateName(b); name != nil {
				refuse(reasonLabels, "duplicate label name "+quote(name))
			}
		}
	}
	if bad == 0 && !s.hasCluster && defaultCluster == "" {
		refuse(reasonNoCluster, "no "+ClusterLabel+" label, and neither the cluster header nor -default-cluster is set")
	}
	if bad != 0 {
		p.refused.count(s.samples+outside[0], s.histograms+outside[1], s.exemplars+outside[2])
		p.refused.byReason[bad] += s.samples + outside[0] + s.histograms + outside[1] + s.exemplars + outside[2]
		p.refused.Series++
		if p.refused.first == "" {
			p.refused.first = "series " + strconv.Itoa(index) + " " + p.describe(b) + ": " + badMsg
		}
		return s, false, nil
	}
	if firstOutside != 0 {
		p.refused.count(outside[0], outside[1], outside[2])
		p.recountOutside(b)
		if p.refused.first == "" {
			p.refused.first = "series " + strconv.Itoa(index) + " " + p.describe(b) + ": " + p.windowMessage(firstOutside, firstTs, histErr)
		}
		if s.samples+s.histograms+s.exemplars == 0 {
			return s, false, nil // nothing of it left to write
		}
		s.partial = true
	}
	switch {
	case s.hasCluster && p.lastGroup >= 0 && bytes.Equal(cluster, p.lastCluster):
		s.group = p.lastGroup // most requests carry one cluster: no map lookup
	case s.hasCluster:
		s.group, err = p.groups.Group(cluster)
		p.lastCluster, p.lastGroup = cluster, s.group
	default:
		s.group, err = p.groups.GroupString(defaultCluster)
	}
	if err != nil {
		return s, false, err
	}
	if lim.Sharder != nil {
		if k := p.shards(s.group); k > 1 {
			s.shard = shard.Of(seriesHash(b), k)
		}
	}
	return s, true, nil
}

// shards is group's shard count, asked of Limits.Sharder once per group.
func (p *Parser) shards(group int) int {
	for len(p.groupShards) <= group {
		p.groupShards = append(p.groupShards, p.lim.Sharder.Shards(p.groups.Names()[len(p.groupShards)]))
	}
	return p.groupShards[group]
}

// seriesHash hashes series b's labels but its cluster label: the same
// series maps to the same shard whether its cluster label was sent or
// added by the gateway, and whatever the order of its labels.
func seriesHash(b []byte) uint64 {
	var h shard.Labels
	for i := 0; i < len(b); {
		num, _, start, end, next := field(b, i)
		if num == fSeriesLabels {
			name, value, _ := label(b[start:end], 0)
			if string(name) != ClusterLabel {
				h.Add(name, value)
			}
		}
		i = next
	}
	return h.Sum()
}

// recountOutside counts b's timestamps outside the window by reason (too
// old, too new). Only for series that have some: the walk keeps one
// counter per kind.
func (p *Parser) recountOutside(b []byte) {
	for i := 0; i < len(b); {
		num, _, start, end, next := field(b, i)
		var ts int64
		switch num {
		case fSeriesSamples:
			ts, _ = sampleTimestamp(b[start:end], 0)
		case fSeriesHistograms:
			ts, _ = histogramTimestamp(b[start:end], 0)
			if p.inWindow(ts) == 0 && validHistogram(b[start:end]) != nil {
				p.refused.byReason[reasonHistogram]++
			}
		case fSeriesExemplars:
			ts, _ = exemplarTimestamp(b[start:end], 0)
			if ts == 0 {
				ts = p.maxT // no timestamp: never refused
			}
		default:
			i = next
			continue
		}
		if r := p.inWindow(ts); r != 0 {
			p.refused.byReason[r]++
		}
		i = next
	}
}

func (p *Parser) windowMessage(r reason, ts int64, histErr string) string {
	at := time.UnixMilli(ts).UTC().Format(time.RFC3339Nano)
	if r == reasonHistogram {
		return "invalid native histogram at " + at + ": " + histErr
	}
	if r == reasonTooOld {
		return "timestamp " + at + " is older than " + p.lim.MaxSampleAge.String() + " (-limits.metrics.max-sample-age)"
	}
	return "timestamp " + at + " is more than " + p.lim.MaxFuture.String() + " ahead of the gateway's clock (-limits.metrics.max-future)"
}

// describe renders the labels of series b for an error message.
func (p *Parser) describe(b []byte) string {
	var sb strings.Builder
	sb.WriteByte('{')
	n := 0
	for i := 0; i < len(b) && sb.Len() < 200; {
		num, _, start, end, next := field(b, i)
		if next < 0 {
			break
		}
		if num == fSeriesLabels {
			name, value, _ := label(b[start:end], 0)
			if n > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(truncate(name))
			sb.WriteByte('=')
			sb.WriteString(quote(value))
			n++
		}
		i = next
	}
	if sb.Len() >= 200 {
		sb.WriteString(", ...")
	}
	sb.WriteByte('}')
	return sb.String()
}

// duplicateName finds a duplicate label name in a series whose labels are
// not sorted (rare: stock senders sort). The series will be re-encoded
// sorted.
func (p *Parser) duplicateName(b []byte) []byte {
	p.names = p.names[:0]
	for i := 0; i < len(b); {
		num, _, start, end, next := field(b, i)
		if num == fSeriesLabels {
			name, _, _ := label(b[start:end], 0)
			p.names = append(p.names, name)
		}
		i = next
	}
	sort.Slice(p.names, func(i, j int) bool { return bytes.Compare(p.names[i], p.names[j]) < 0 })
	for i := 1; i < len(p.names); i++ {
		if bytes.Equal(p.names[i-1], p.names[i]) {
			return p.names[i]
		}
	}
	return nil
}

// label reads a Label message at b (offset base in the request).
func label(b []byte, base int) (name, value []byte, err error) {
	// Fast path: name then value, each shorter than 128 bytes, as every
	// encoder writes them (the same one-byte case as field's).
	const nameTag, valueTag = fLabelName<<3 | byte(protowire.BytesType), fLabelValue<<3 | byte(protowire.BytesType)
	if len(b) >= 4 && b[0] == nameTag && b[1] < 0x80 {
		j := 2 + int(b[1])
		if j+2 <= len(b) && b[j] == valueTag && b[j+1] < 0x80 && j+2+int(b[j+1]) == len(b) {
			return b[2:j], b[j+2:], nil
		}
	}
	for i := 0; i < len(b); {
		num, typ, start, end, next := field(b, i)
		if next < 0 {
			return nil, nil, fieldError(b, i, base)
		}
		switch num {
		case fLabelName, fLabelValue:
			if typ != protowire.BytesType {
				return nil, nil, wrongType(base+i, "Label field", typ)
			}
			if num == fLabelName {
				name = b[start:end]
			} else {
				value = b[start:end]
			}
		}
		i = next
	}
	return name, value, nil
}

func (p *Parser) checkLabel(name, value []byte) (reason, string) {
	lim := &p.lim
	if len(name) == 0 {
		return reasonLabels, "empty label name"
	}
	if len(name) > lim.MaxLabelNameLen {
		return reasonLimit, "label name longer than " + strconv.Itoa(lim.MaxLabelNameLen) + " bytes (-limits.max-label-name-length)"
	}
	if lim.UTF8Names {
		if !utf8.Valid(name) {
			return reasonLabels, "label name " + quote(name) + " is not valid UTF-8"
		}
	} else if !legacyName(name) {
		return reasonLabels, "invalid label name " + quote(name) + p.utf8Hint()
	}
	if len(value) > lim.MaxLabelValueLen {
		return reasonLimit, "value of label " + quote(name) + " longer than " + strconv.Itoa(lim.MaxLabelValueLen) + " bytes (-limits.max-label-value-length)"
	}
	// Label values are short and nearly always ASCII: one OR over the bytes
	// is cheaper than utf8.Valid's call and chunking.
	var or byte
	for _, c := range value {
		or |= c
	}
	if or >= utf8.RuneSelf && !utf8.Valid(value) {
		return reasonLabels, "value of label " + quote(name) + " is not valid UTF-8"
	}
	return 0, ""
}

func (p *Parser) utf8Hint() string {
	if p.lim.UTF8Names {
		return ""
	}
	return " (other UTF-8 names need -limits.metrics.utf8-names)"
}

func legacyName(name []byte) bool {
	if !nameStart[name[0]] {
		return false
	}
	for _, c := range name[1:] {
		if !nameChar[c] {
			return false
		}
	}
	return true
}

func (p *Parser) validMetricName(v []byte) bool {
	if p.lim.UTF8Names {
		return utf8.Valid(v)
	}
	if v[0] >= '0' && v[0] <= '9' {
		return false
	}
	for _, c := range v {
		if !metricChar[c] {
			return false
		}
	}
	return true
}

// sampleTimestamp checks a Sample message at b (offset base) and returns
// its timestamp.
func sampleTimestamp(b []byte, base int) (int64, error) {
	// Fast path: value then timestamp, as every encoder writes them.
	if len(b) >= 10 && b[0] == fSampleValue<<3|byte(protowire.Fixed64Type) && b[9] == fSampleTimestamp<<3|byte(protowire.VarintType) {
		if v, n := protowire.ConsumeVarint(b[10:]); n == len(b)-10 {
			return int64(v), nil
		}
	}
	var ts int64
	for i := 0; i < len(b); {
		num, typ, start, _, next := field(b, i)
		if next < 0 {
			return 0, fieldError(b, i, base)
		}
		switch {
		case num == fSampleValue && typ != protowire.Fixed64Type:
			return 0, wrongType(base+i, "Sample.value", typ)
		case num == fSampleTimestamp && typ != protowire.VarintType:
			return 0, wrongType(base+i, "Sample.timestamp", typ)
		case num == fSampleTimestamp:
			v, _ := protowire.ConsumeVarint(b[start:])
			ts = int64(v)
		}
		i = next
	}
	return ts, nil
}

// histogramTimestamp checks a Histogram message's structure, bucket spans
// included, and returns its timestamp.
func histogramTimestamp(b []byte, base int) (int64, error) {
	var ts int64
	for i := 0; i < len(b); {
		num, typ, start, end, next := field(b, i)
		if next < 0 {
			return 0, fieldError(b, i, base)
		}
		switch num {
		case fHistogramTimestamp:
			if typ != protowire.VarintType {
				return 0, wrongType(base+i, "Histogram.timestamp", typ)
			}
			v, _ := protowire.ConsumeVarint(b[start:])
			ts = int64(v)
		case fHistogramNegSpans, fHistogramPosSpans:
			if typ != protowire.BytesType {
				return 0, wrongType(base+i, "Histogram spans", typ)
			}
			if err := checkFields(b[start:end], base+start); err != nil {
				return 0, err
			}
		}
		i = next
	}
	return ts, nil
}

// exemplarTimestamp checks an Exemplar message, its labels included, and
// returns its timestamp.
func exemplarTimestamp(b []byte, base int) (int64, error) {
	var ts int64
	for i := 0; i < len(b); {
		num, typ, start, end, next := field(b, i)
		if next < 0 {
			return 0, fieldError(b, i, base)
		}
		switch num {
		case fExemplarTimestamp:
			if typ != protowire.VarintType {
				return 0, wrongType(base+i, "Exemplar.timestamp", typ)
			}
			v, _ := protowire.ConsumeVarint(b[start:])
			ts = int64(v)
		case fExemplarLabels:
			if typ != protowire.BytesType {
				return 0, wrongType(base+i, "Exemplar.labels", typ)
			}
			if _, _, err := label(b[start:end], base+start); err != nil {
				return 0, err
			}
		}
		i = next
	}
	return ts, nil
}

// validHistogram is nil for a native histogram Prometheus stores: a
// Prometheus 3 sink answers 400 for the whole request otherwise (which
// would dead-letter every valid series of the record), 2.x answers 500
// (which would stall the partition). Only histogram samples pay for the
// decode.
func validHistogram(b []byte) error {
	var h prompb.Histogram
	if err := h.Unmarshal(b); err != nil {
		return err
	}
	if h.IsFloatHistogram() {
		fh := h.ToFloatHistogram()
		if histogram.IsExponentialSchemaReserved(fh.Schema) && fh.Schema > histogram.ExponentialSchemaMax {
			if err := fh.ReduceResolution(histogram.ExponentialSchemaMax); err != nil { // as Prometheus's receiver does
				return err
			}
		}
		return fh.Validate()
	}
	ih := h.ToIntHistogram()
	if histogram.IsExponentialSchemaReserved(ih.Schema) && ih.Schema > histogram.ExponentialSchemaMax {
		if err := ih.ReduceResolution(histogram.ExponentialSchemaMax); err != nil {
			return err
		}
	}
	return ih.Validate()
}

// checkFields checks that b is a sequence of legal fields.
func checkFields(b []byte, base int) error {
	for i := 0; i < len(b); {
		_, _, _, _, next := field(b, i)
		if next < 0 {
			return fieldError(b, i, base)
		}
		i = next
	}
	return nil
}

func quote(b []byte) string {
	const max = 64
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}

// truncate renders a label name: as is when it is a classic name.
func truncate(b []byte) string {
	if len(b) > 0 && len(b) <= 64 && legacyName(b) {
		return string(b)
	}
	return quote(b)
}
