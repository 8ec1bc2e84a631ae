package lokipush

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"github.com/golang/snappy"

	"github.com/tributary-io/tributary/pkg/reject"
)

// Field numbers of logproto.PushRequest and its children
// (github.com/grafana/loki/pkg/push/push.proto) and of
// google.protobuf.Timestamp.
const (
	fPushStreams = 1
	fPushFormat  = 2

	fStreamLabels  = 1
	fStreamEntries = 2
	fStreamHash    = 3

	fEntryTimestamp          = 1
	fEntryLine               = 2
	fEntryStructuredMetadata = 3
	fEntryParsed             = 4

	fTimestampSeconds = 1
	fTimestampNanos   = 2

	fPairName  = 1
	fPairValue = 2
)

// Wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// maxStreamLabelsBytes is the longest label string Loki parses
// (maxStreamLabelsSize in pkg/loghttp/push/push.go); longer is a 413 there.
const maxStreamLabelsBytes = 1 << 24

// The range of a valid google.protobuf.Timestamp, [0001-01-01, 10000-01-01),
// which gogo's StdTimeUnmarshal enforces when Loki decodes an entry.
const (
	minTimestampSeconds = -62135596800
	maxTimestampSeconds = 253402300800 // exclusive
)

var (
	errTruncated = errors.New("truncated message")
	errOverflow  = errors.New("varint overflows 64 bits")
	errBadTag    = errors.New("illegal field number 0")
	errGroup     = errors.New("unsupported wire type (group)")
	errWireType  = errors.New("illegal wire type")
)

// field is one protobuf field: its number, wire type, and value (val for
// varints, data for length-delimited fields).
type field struct {
	num  int32
	typ  int
	val  uint64
	data []byte
	off  int // index of data in the walked slice
}

// readVarint decodes a varint the way gogo's generated code does: at most ten
// bytes, high bits of the tenth silently dropped.
func readVarint(b []byte, i int) (uint64, int, error) {
	if i < len(b) && b[i] < 0x80 {
		return uint64(b[i]), i + 1, nil
	}
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if i >= len(b) {
			return 0, 0, errTruncated
		}
		c := b[i]
		i++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, i, nil
		}
	}
	return 0, 0, errOverflow
}

// nextField reads the field starting at b[i] and returns the index after it.
// It accepts what gogo's Unmarshal accepts, except deprecated groups, which
// no Loki client sends and which gogo skips by unbounded recursion.
func nextField(b []byte, i int) (field, int, error) {
	tag, i, err := readVarint(b, i)
	if err != nil {
		return field{}, 0, err
	}
	f := field{num: int32(tag >> 3), typ: int(tag & 7)} // int32: as gogo truncates
	if f.num <= 0 {
		return field{}, 0, errBadTag
	}
	switch f.typ {
	case wireVarint:
		f.val, i, err = readVarint(b, i)
		if err != nil {
			return field{}, 0, err
		}
	case wireFixed64:
		if len(b)-i < 8 {
			return field{}, 0, errTruncated
		}
		i += 8
	case wireBytes:
		var n uint64
		if n, i, err = readVarint(b, i); err != nil {
			return field{}, 0, err
		}
		if n > uint64(len(b)-i) {
			return field{}, 0, errTruncated
		}
		f.data, f.off = b[i:i+int(n)], i
		i += int(n)
	case wireFixed32:
		if len(b)-i < 4 {
			return field{}, 0, errTruncated
		}
		i += 4
	case 3, 4:
		return field{}, 0, errGroup
	default:
		return field{}, 0, errWireType
	}
	return f, i, nil
}

// wrongType is gogo's error for a known field with another wire type.
func wrongType(what string, f field) error {
	return fmt.Errorf("wrong wire type %d for field %s", f.typ, what)
}

// alias returns b as a string without copying. The result must not outlive
// the buffer, which Parse keeps untouched until it returns; whatever Parse
// returns is copied out first.
func alias(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// decodeState is the scratch space of one protobuf Parse, pooled: on the fast
// path nothing decoded is returned, so it all goes straight back.
type decodeState struct {
	buf    []byte        // the snappy-decoded request
	labels [16]labelPair // one stream's labels; more spill to the heap
}

var statePool = sync.Pool{New: func() any { return new(decodeState) }}

const maxPooledBuffer = 4 << 20

func parseProtobuf(body []byte, defaultCluster string, lim Limits) ([]Batch, error) {
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return nil, reject.BadRequest("decode snappy body: %v", err)
	}
	if lim.MaxDecodedBytes > 0 && n > lim.MaxDecodedBytes {
		return nil, reject.TooLarge("snappy body declares %d decoded bytes, limit %d", n, lim.MaxDecodedBytes)
	}
	st := statePool.Get().(*decodeState)
	defer func() {
		st.labels = [16]labelPair{}
		if cap(st.buf) > maxPooledBuffer {
			st.buf = nil
		}
		statePool.Put(st)
	}()
	if cap(st.buf) < n {
		st.buf = make([]byte, n)
	}
	b, err := snappy.Decode(st.buf[:cap(st.buf)], body)
	if err != nil {
		return nil, reject.BadRequest("decode snappy body: %v", err)
	}

	sc, err := scanPushRequest(b, defaultCluster, lim, st.labels[:0])
	if err != nil {
		return nil, err
	}
	if sc.streams == 0 {
		if sc.total == 0 {
			return nil, errNoStreams()
		}
		return nil, nil // only empty streams: Loki accepts and writes nothing
	}
	if !sc.rewrite && (lim.MaxRecordBytes <= 0 || len(body) <= lim.MaxRecordBytes) {
		return []Batch{{Cluster: strings.Clone(sc.cluster), Value: body, Entries: sc.entries, LineBytes: sc.lineBytes}}, nil
	}
	return collectPushRequest(b, defaultCluster, st.labels[:0], sc).batches(lim)
}

// requestScan summarises a validated PushRequest.
type requestScan struct {
	total     int    // streams
	streams   int    // streams with entries
	entries   int    // over all streams
	lineBytes int    // over all streams
	cluster   string // of the first stream with entries; aliases the request
	rewrite   bool   // some stream lacks the cluster label, or clusters differ
}

// scanPushRequest validates a decoded PushRequest without building it.
func scanPushRequest(b []byte, defaultCluster string, lim Limits, scratch []labelPair) (requestScan, error) {
	var sc requestScan
	for i := 0; i < len(b); {
		f, next, err := nextField(b, i)
		if err != nil {
			return sc, reject.BadRequest("decode protobuf PushRequest after stream %d: %v", sc.total, err)
		}
		i = next
		switch f.num {
		case fPushStreams:
			if f.typ != wireBytes {
				return sc, reject.BadRequest("decode protobuf PushRequest: %v", wrongType("streams", f))
			}
			st, err := scanStream(f.data, sc.total, defaultCluster, lim, scratch)
			if err != nil {
				return sc, err
			}
			sc.total++
			if st.entries == 0 {
				continue
			}
			if sc.streams == 0 {
				sc.cluster = st.cluster
			} else if st.cluster != sc.cluster {
				sc.rewrite = true
			}
			if st.addCluster {
				sc.rewrite = true
			}
			sc.streams++
			sc.entries += st.entries
			sc.lineBytes += st.lineBytes
		case fPushFormat:
			if f.typ != wireBytes {
				return sc, reject.BadRequest("decode protobuf PushRequest: %v", wrongType("format", f))
			}
		}
	}
	return sc, nil
}

type streamScan struct {
	entries    int
	lineBytes  int
	cluster    string // aliases the request
	addCluster bool   // the stream has no cluster label; cluster is the default
}

// scanStream validates one StreamAdapter: its labels as Loki parses and
// validates them, and every entry.
func scanStream(b []byte, idx int, defaultCluster string, lim Limits, scratch []labelPair) (streamScan, error) {
	var st streamScan
	var labels []byte
	for i := 0; i < len(b); {
		f, next, err := nextField(b, i)
		if err != nil {
			return st, reject.BadRequest("stream %s: decode protobuf: %v", protoStreamName(b, idx), err)
		}
		i = next
		switch f.num {
		case fStreamLabels:
			if f.typ != wireBytes {
				return st, reject.BadRequest("stream %s: decode protobuf: %v", protoStreamName(b, idx), wrongType("labels", f))
			}
			labels = f.data // the last one wins, as in gogo
		case fStreamEntries:
			if f.typ != wireBytes {
				return st, reject.BadRequest("stream %s: decode protobuf: %v", protoStreamName(b, idx), wrongType("entries", f))
			}
			lineLen, err := scanEntry(f.data, lim)
			if err != nil {
				return st, badStream(protoStreamName(b, idx), "entry %d: %v", st.entries, err)
			}
			st.entries++
			st.lineBytes += lineLen
		case fStreamHash:
			if f.typ != wireVarint {
				return st, reject.BadRequest("stream %s: decode protobuf: %v", protoStreamName(b, idx), wrongType("hash", f))
			}
		}
	}

	s := alias(labels)
	name := func() string {
		if len(strings.TrimSpace(s)) == 0 {
			return fmt.Sprintf("#%d", idx)
		}
		return streamName(s)
	}
	if len(s) > maxStreamLabelsBytes {
		return st, reject.TooLarge("stream %s: labels of %d bytes exceed Loki's limit of %d", streamName(s), len(s), maxStreamLabelsBytes)
	}
	pairs, err := parseLabels(s, scratch)
	if err != nil {
		return st, badStream(name(), "error parsing labels: %v", err)
	}
	if st.entries == 0 {
		return st, nil // Loki parses the labels of an empty stream, then skips it
	}
	ls := normalize(pairs)
	st.cluster = ls.cluster
	var add string
	if ls.cluster == "" {
		if defaultCluster == "" {
			return st, badStream(name(), "no %s label and no default cluster", ClusterLabel)
		}
		add, st.cluster, st.addCluster = defaultCluster, defaultCluster, true
	}
	if err := ls.check(lim, add, name); err != nil {
		return st, err
	}
	return st, nil
}

// protoStreamName names a stream for an error found before or while its
// entries were read: its labels if it has readable ones, else its index.
func protoStreamName(b []byte, idx int) string {
	var labels []byte
	for i := 0; i < len(b); {
		f, next, err := nextField(b, i)
		if err != nil {
			break
		}
		i = next
		if f.num == fStreamLabels && f.typ == wireBytes {
			labels = f.data
		}
	}
	if len(labels) == 0 {
		return fmt.Sprintf("#%d", idx)
	}
	return streamName(string(labels))
}

// scanEntry validates one EntryAdapter and returns the length of its line.
func scanEntry(b []byte, lim Limits) (int, error) {
	var (
		line                 int
		hasTimestamp         bool
		metaCount, metaBytes int
		err                  error
		name, value          []byte
		f                    field
	)
	for i := 0; i < len(b); {
		if f, i, err = nextField(b, i); err != nil {
			return 0, fmt.Errorf("decode protobuf: %w", err)
		}
		switch f.num {
		case fEntryTimestamp:
			if f.typ != wireBytes {
				return 0, fmt.Errorf("decode protobuf: %w", wrongType("timestamp", f))
			}
			if err = scanTimestamp(f.data); err != nil {
				return 0, err
			}
			hasTimestamp = true
		case fEntryLine:
			if f.typ != wireBytes {
				return 0, fmt.Errorf("decode protobuf: %w", wrongType("line", f))
			}
			line = len(f.data) // the last one wins, as in gogo
		case fEntryStructuredMetadata, fEntryParsed:
			if f.typ != wireBytes {
				return 0, fmt.Errorf("decode protobuf: %w", wrongType("structuredMetadata", f))
			}
			if name, value, err = scanPair(f.data); err != nil {
				return 0, err
			}
			if f.num == fEntryStructuredMetadata {
				metaCount++
				if string(name) != detectedLevelLabel {
					metaBytes += len(name) + len(value)
				}
			}
		}
	}
	if !hasTimestamp {
		return 0, errors.New("entry has no timestamp")
	}
	return line, checkEntry(line, metaCount, metaBytes, lim)
}

// checkEntry applies Loki's ValidateEntry size rules.
func checkEntry(line, metaCount, metaBytes int, lim Limits) error {
	if lim.MaxLineBytes > 0 && line > lim.MaxLineBytes {
		return fmt.Errorf("line too long: %d bytes, max_line_size is %d", line, lim.MaxLineBytes)
	}
	if lim.MaxStructuredMetadataBytes > 0 && metaBytes > lim.MaxStructuredMetadataBytes {
		return fmt.Errorf("structured metadata too large: %d bytes, limit %d", metaBytes, lim.MaxStructuredMetadataBytes)
	}
	if lim.MaxStructuredMetadataEntries > 0 && metaCount > lim.MaxStructuredMetadataEntries {
		return fmt.Errorf("too many structured metadata labels: %d, limit %d", metaCount, lim.MaxStructuredMetadataEntries)
	}
	return nil
}

// scanTimestamp decodes a google.protobuf.Timestamp and checks its range as
// gogo's StdTimeUnmarshal does.
func scanTimestamp(b []byte) error {
	var s int64
	var ns int32
	for i := 0; i < len(b); {
		f, next, err := nextField(b, i)
		if err != nil {
			return fmt.Errorf("decode protobuf timestamp: %w", err)
		}
		i = next
		switch f.num {
		case fTimestampSeconds:
			if f.typ != wireVarint {
				return fmt.Errorf("decode protobuf: %w", wrongType("seconds", f))
			}
			s = int64(f.val)
		case fTimestampNanos:
			if f.typ != wireVarint {
				return fmt.Errorf("decode protobuf: %w", wrongType("nanos", f))
			}
			ns = int32(f.val) // as gogo decodes an int32
		}
	}
	if s < minTimestampSeconds || s >= maxTimestampSeconds || ns < 0 || ns >= 1e9 {
		return fmt.Errorf("invalid timestamp: seconds %d, nanos %d (valid: years 1 to 9999, nanos in [0, 1e9))", s, ns)
	}
	return nil
}

// scanPair decodes a LabelPairAdapter.
func scanPair(b []byte) (name, value []byte, err error) {
	for i := 0; i < len(b); {
		var f field
		if f, i, err = nextField(b, i); err != nil {
			return nil, nil, fmt.Errorf("decode protobuf label pair: %w", err)
		}
		switch f.num {
		case fPairName:
			if f.typ != wireBytes {
				return nil, nil, fmt.Errorf("decode protobuf: %w", wrongType("name", f))
			}
			name = f.data
		case fPairValue:
			if f.typ != wireBytes {
				return nil, nil, fmt.Errorf("decode protobuf: %w", wrongType("value", f))
			}
			value = f.data
		}
	}
	return name, value, nil
}

// collectPushRequest gathers a validated PushRequest for re-encoding: each
// stream with entries, its cluster and its label string (rendered anew only
// where the cluster label is added), and every entry's bytes as received.
func collectPushRequest(b []byte, defaultCluster string, scratch []labelPair, sc requestScan) *request {
	r := &request{buf: b, streams: make([]outStream, 0, sc.streams), entries: make([]outEntry, 0, sc.entries)}
	for i := 0; i < len(b); {
		f, next, _ := nextField(b, i) // validated by scanPushRequest
		i = next
		switch f.num {
		case fPushFormat:
			r.format = alias(f.data)
		case fPushStreams:
			var labels []byte
			from := len(r.entries)
			for j := 0; j < len(f.data); {
				g, next, _ := nextField(f.data, j)
				j = next
				switch g.num {
				case fStreamLabels:
					labels = g.data
				case fStreamEntries:
					r.entries = append(r.entries, outEntry{off: f.off + g.off, n: len(g.data), line: entryLineLen(g.data)})
				}
			}
			if len(r.entries) == from {
				continue
			}
			s := alias(labels)
			pairs, _ := parseLabels(s, scratch)
			ls := normalize(pairs)
			st := outStream{cluster: ls.cluster, labels: s, from: from, to: len(r.entries)}
			if ls.cluster == "" {
				st.cluster = defaultCluster
				st.labels = ls.render(defaultCluster)
			}
			r.streams = append(r.streams, st)
		}
	}
	return r
}

// entryLineLen is the length of a validated entry's (last) line.
func entryLineLen(b []byte) int {
	line := 0
	for i := 0; i < len(b); {
		f, next, _ := nextField(b, i)
		i = next
		if f.num == fEntryLine {
			line = len(f.data)
		}
	}
	return line
}
