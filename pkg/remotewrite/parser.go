// Package remotewrite is the gateway side of Prometheus remote-write 1.0:
// it validates a snappy-compressed prometheus.WriteRequest without building
// prompb objects and turns it into Kafka record values keyed by cluster.
//
// When a request needs no rewriting (every series already carries the same
// cluster label, labels are sorted, and it fits one record), the record value
// is the request body exactly as received. Otherwise the request is
// re-encoded: split by cluster, the default cluster label inserted, labels
// sorted, and cut into records no larger than Limits.MaxRecordBytes.
package remotewrite

import (
	"bytes"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/golang/snappy"

	"github.com/tributary-io/tributary/pkg/reject"
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
)

// Limits bound what one request may cost. Sizes are checked before the
// corresponding allocation.
type Limits struct {
	MaxDecodedBytes    int `yaml:"max_decoded_bytes"`
	MaxRecordBytes     int `yaml:"max_record_bytes"`
	MaxLabelsPerSeries int `yaml:"max_labels_per_series"`
	MaxLabelNameLen    int `yaml:"max_label_name_length"`
	MaxLabelValueLen   int `yaml:"max_label_value_length"`
}

// DefaultLimits are generous for stock Prometheus senders (a default
// remote_write request is 2000 samples, ~100-300 KiB decoded).
func DefaultLimits() Limits {
	return Limits{
		MaxDecodedBytes:    32 << 20,  // 32 MiB: 100x a default Prometheus request
		MaxRecordBytes:     900 << 10, // below Kafka's default 1 MB message.max.bytes, with room for headers
		MaxLabelsPerSeries: 64,        // Mimir's default is 30; allow more, the sink decides
		MaxLabelNameLen:    1024,
		MaxLabelValueLen:   4096,
	}
}

// Batch is one Kafka record's worth of a request: a snappy-compressed
// WriteRequest whose series all belong to Cluster.
type Batch struct {
	Cluster string
	Value   []byte
	Series  int
	Samples int // float samples + histogram samples
}

type seriesInfo struct {
	start, end int // TimeSeries payload in the decoded request
	cluster    string
	hasCluster bool
	sorted     bool
	samples    int
	group      int
}

// Parser validates and splits requests. It keeps its buffers between calls;
// it is not safe for concurrent use (pool it).
type Parser struct {
	decoded     []byte
	series      []seriesInfo
	metadata    [][2]int
	batches     []Batch
	clusters    map[string]string // interned cluster names
	lastCluster string
	names       [][]byte // scratch for sorting label names
	raw         []byte   // scratch for re-encoding
	labels      []labelSpan
	order       []int
}

// maxKeptBuffer bounds the decode buffer a pooled Parser keeps, so one huge
// request does not pin its memory forever.
const maxKeptBuffer = 4 << 20

// Parse validates body (snappy-compressed WriteRequest) and returns its
// records. The returned slice and the Batch values are valid until the next
// call; Value may alias body. defaultCluster is used for series without a
// cluster label; if it is empty such series are refused.
func (p *Parser) Parse(body []byte, defaultCluster string, lim Limits) ([]Batch, error) {
	if len(defaultCluster) > lim.MaxLabelValueLen || !utf8.ValidString(defaultCluster) {
		return nil, reject.BadRequest("invalid default cluster %q", defaultCluster)
	}
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return nil, reject.BadRequest("snappy: %v", err)
	}
	if n > lim.MaxDecodedBytes {
		return nil, reject.TooLarge("decoded body of %d bytes exceeds the limit of %d", n, lim.MaxDecodedBytes)
	}
	if cap(p.decoded) < n {
		p.decoded = make([]byte, n)
	}
	dec, err := snappy.Decode(p.decoded[:cap(p.decoded)], body)
	if err != nil {
		return nil, reject.BadRequest("snappy: %v", err)
	}
	defer func() {
		if cap(p.decoded) > maxKeptBuffer {
			p.decoded = nil
		}
		if cap(p.raw) > maxKeptBuffer {
			p.raw = nil
		}
	}()
	if err := p.walk(dec, defaultCluster, lim); err != nil {
		return nil, err
	}
	p.batches = p.batches[:0]
	if len(p.series) == 0 && len(p.metadata) == 0 {
		return p.batches, nil
	}
	if p.forwardable(body, lim) {
		b := Batch{Cluster: p.series[0].cluster, Value: body, Series: len(p.series)}
		for i := range p.series {
			b.Samples += p.series[i].samples
		}
		p.batches = append(p.batches, b)
		return p.batches, nil
	}
	if len(p.series) == 0 {
		// Metadata only: it belongs to no series, so to the default cluster.
		if defaultCluster == "" {
			return nil, reject.BadRequest("metadata-only request without a %s and no default cluster", ClusterLabel)
		}
	}
	if err := p.rewrite(dec, defaultCluster, lim); err != nil {
		return nil, err
	}
	return p.batches, nil
}

// forwardable reports whether body can be the record value unchanged.
func (p *Parser) forwardable(body []byte, lim Limits) bool {
	if len(body) > lim.MaxRecordBytes || len(p.series) == 0 {
		return false
	}
	c := p.series[0].cluster
	for i := range p.series {
		s := &p.series[i]
		if !s.hasCluster || !s.sorted || s.cluster != c {
			return false
		}
	}
	return true
}

// walk validates the decoded WriteRequest and records per-series facts.
func (p *Parser) walk(b []byte, defaultCluster string, lim Limits) error {
	p.series = p.series[:0]
	p.metadata = p.metadata[:0]
	for i := 0; i < len(b); {
		num, typ, start, end, next := field(b, i)
		if next < 0 {
			return reject.BadRequest("malformed protobuf WriteRequest at byte %d", i)
		}
		switch {
		case num == fWriteRequestTimeseries && typ == wireBytes:
			s, err := p.walkSeries(b[start:end], lim)
			if err != nil {
				return reject.BadRequest("series %d: %v", len(p.series), err)
			}
			s.start, s.end = start, end
			if !s.hasCluster {
				if defaultCluster == "" {
					return reject.BadRequest("series %d has no %s label and no default cluster is set", len(p.series), ClusterLabel)
				}
				s.cluster = defaultCluster
			}
			p.series = append(p.series, s)
		case num == fWriteRequestMetadata && typ == wireBytes:
			p.metadata = append(p.metadata, [2]int{i, next})
		case num == fWriteRequestTimeseries || num == fWriteRequestMetadata:
			return reject.BadRequest("WriteRequest field %d has wire type %d", num, typ)
		}
		i = next
	}
	return nil
}

type walkError string

func (e walkError) Error() string { return string(e) }

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

func (p *Parser) walkSeries(b []byte, lim Limits) (seriesInfo, error) {
	s := seriesInfo{sorted: true}
	var prev []byte
	labels, unsorted := 0, false
	hasName := false
	for i := 0; i < len(b); {
		num, typ, start, end, next := field(b, i)
		if next < 0 {
			return s, errTruncated
		}
		switch num {
		case fSeriesLabels:
			if typ != wireBytes {
				return s, walkError("label with wrong wire type")
			}
			name, value, err := label(b[start:end])
			if err != nil {
				return s, err
			}
			labels++
			if labels > lim.MaxLabelsPerSeries {
				return s, walkError("more than " + strconv.Itoa(lim.MaxLabelsPerSeries) + " labels")
			}
			if err := checkLabel(name, value, lim); err != nil {
				return s, err
			}
			if prev != nil {
				switch c := bytes.Compare(prev, name); {
				case c == 0:
					return s, walkError("duplicate label name " + quote(name))
				case c > 0:
					unsorted = true
				}
			}
			prev = name
			switch {
			case len(name) == len("__name__") && string(name) == "__name__":
				if len(value) == 0 {
					return s, walkError("empty metric name")
				}
				if !validMetricName(value) {
					return s, walkError("invalid metric name " + quote(value))
				}
				hasName = true
			case len(name) == len(ClusterLabel) && string(name) == ClusterLabel:
				if len(value) == 0 {
					return s, walkError("empty " + ClusterLabel + " label")
				}
				s.hasCluster = true
				s.cluster = p.intern(value)
			}
		case fSeriesSamples:
			if typ != wireBytes {
				return s, walkError("sample with wrong wire type")
			}
			if err := checkSample(b[start:end]); err != nil {
				return s, err
			}
			s.samples++
		case fSeriesHistograms:
			if typ != wireBytes {
				return s, walkError("histogram with wrong wire type")
			}
			s.samples++
		case fSeriesExemplars:
			if typ != wireBytes {
				return s, walkError("exemplar with wrong wire type")
			}
		}
		i = next
	}
	if labels == 0 {
		return s, walkError("no labels")
	}
	if !hasName {
		return s, walkError("no __name__ label")
	}
	if unsorted {
		s.sorted = false
		if err := p.checkUnique(b); err != nil {
			return s, err
		}
	}
	return s, nil
}

// checkUnique finds duplicate label names in a series whose labels are not
// sorted (rare: stock senders sort). The series will be re-encoded sorted.
func (p *Parser) checkUnique(b []byte) error {
	p.names = p.names[:0]
	for i := 0; i < len(b); {
		num, typ, start, end, next := field(b, i)
		if num == fSeriesLabels && typ == wireBytes {
			name, _, _ := label(b[start:end])
			p.names = append(p.names, name)
		}
		i = next
	}
	sort.Slice(p.names, func(i, j int) bool { return bytes.Compare(p.names[i], p.names[j]) < 0 })
	for i := 1; i < len(p.names); i++ {
		if bytes.Equal(p.names[i-1], p.names[i]) {
			return walkError("duplicate label name " + quote(p.names[i]))
		}
	}
	return nil
}

func label(b []byte) (name, value []byte, err error) {
	// Fast path: name then value, each shorter than 128 bytes, as every
	// encoder writes them.
	if len(b) >= 4 && b[0] == fLabelName<<3|wireBytes && b[1] < 0x80 {
		j := 2 + int(b[1])
		if j+2 <= len(b) && b[j] == fLabelValue<<3|wireBytes && b[j+1] < 0x80 && j+2+int(b[j+1]) == len(b) {
			return b[2:j], b[j+2:], nil
		}
	}
	for i := 0; i < len(b); {
		num, typ, start, end, next := field(b, i)
		if next < 0 {
			return nil, nil, errTruncated
		}
		switch {
		case num == fLabelName && typ == wireBytes:
			name = b[start:end]
		case num == fLabelValue && typ == wireBytes:
			value = b[start:end]
		case num == fLabelName || num == fLabelValue:
			return nil, nil, walkError("label field with wrong wire type")
		}
		i = next
	}
	return name, value, nil
}

func checkLabel(name, value []byte, lim Limits) error {
	if len(name) == 0 {
		return walkError("empty label name")
	}
	if len(name) > lim.MaxLabelNameLen {
		return walkError("label name longer than " + strconv.Itoa(lim.MaxLabelNameLen) + " bytes")
	}
	if !nameStart[name[0]] {
		return walkError("invalid label name " + quote(name))
	}
	for _, c := range name[1:] {
		if !nameChar[c] {
			return walkError("invalid label name " + quote(name))
		}
	}
	if len(value) > lim.MaxLabelValueLen {
		return walkError("value of label " + quote(name) + " longer than " + strconv.Itoa(lim.MaxLabelValueLen) + " bytes")
	}
	// Label values are short and nearly always ASCII: one OR over the bytes
	// is cheaper than utf8.Valid's call and chunking.
	var or byte
	for _, c := range value {
		or |= c
	}
	if or >= utf8.RuneSelf && !utf8.Valid(value) {
		return walkError("value of label " + quote(name) + " is not valid UTF-8")
	}
	return nil
}

func validMetricName(v []byte) bool {
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

func checkSample(b []byte) error {
	for i := 0; i < len(b); {
		num, typ, _, _, next := field(b, i)
		if next < 0 {
			return errTruncated
		}
		if (num == fSampleValue && typ != wireFixed64) || (num == fSampleTimestamp && typ != wireVarint) {
			return walkError("sample field with wrong wire type")
		}
		i = next
	}
	return nil
}

func (p *Parser) intern(v []byte) string {
	if string(v) == p.lastCluster { // most requests carry one cluster
		return p.lastCluster
	}
	if s, ok := p.clusters[string(v)]; ok {
		p.lastCluster = s
		return s
	}
	if p.clusters == nil || len(p.clusters) > 10000 {
		p.clusters = make(map[string]string)
	}
	s := string(v)
	p.clusters[s] = s
	p.lastCluster = s
	return s
}

func quote(b []byte) string {
	const max = 64
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}
