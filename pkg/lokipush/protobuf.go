package lokipush

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unsafe"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"

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
	errGroup     = errors.New("unsupported wire type (group)")
	errWireType  = errors.New("illegal wire type")
)

// field is one protobuf field: its number, wire type, and value (val for
// varints, data for length-delimited fields).
type field struct {
	num  protowire.Number
	typ  protowire.Type
	val  uint64
	data []byte
	off  int // index of data in the walked slice
}

// wireError is a malformed field at byte at of the walked slice.
type wireError struct {
	at  int
	err error
}

func (e *wireError) Error() string { return fmt.Sprintf("%v at byte %d", e.err, e.at) }

// rebase makes err's offset, if it has one, count from base bytes earlier.
// Call it before wrapping err: the wrapper's text is fixed when it is made.
func rebase(err error, base int) error {
	var we *wireError
	if errors.As(err, &we) {
		we.at += base // nextField makes a fresh error for each fault
	}
	return err
}

// nextField reads the field starting at b[i] and returns the index after it.
// It accepts what gogo's Unmarshal accepts, except deprecated groups, which
// no Loki client sends and which gogo skips by unbounded recursion, field
// numbers above 2^29-1, which no valid message holds, and varints whose
// tenth byte overflows, whose high bits gogo drops.
func nextField(b []byte, i int) (field, int, error) {
	// Fast path for nearly every field of a push (streams, labels, entries,
	// lines of under 128 bytes): a one-byte tag of a length-delimited field
	// (number 1 to 15, always legal) and a one-byte length, read inline as
	// remotewrite's walk does; protowire alone made BenchmarkParseProtobuf
	// ~25% slower.
	if i+1 < len(b) {
		if t, l := b[i], b[i+1]; t < 0x80 && t&7 == byte(protowire.BytesType) && t >= 8 && l < 0x80 {
			if end := i + 2 + int(l); end <= len(b) {
				return field{num: protowire.Number(t >> 3), typ: protowire.BytesType, data: b[i+2 : end], off: i + 2}, end, nil
			}
		}
	}
	num, typ, n := protowire.ConsumeTag(b[i:])
	if n < 0 {
		if tag, m := protowire.ConsumeVarint(b[i:]); m >= 0 { // a well-formed varint: its number is wrong
			return field{}, 0, &wireError{i, fieldNumberError(tag >> 3)}
		}
		return field{}, 0, &wireError{i, parseError(n)}
	}
	if num > protowire.MaxValidNumber {
		return field{}, 0, &wireError{i, fieldNumberError(uint64(num))}
	}
	f := field{num: num, typ: typ}
	i += n
	switch typ {
	case protowire.VarintType:
		f.val, n = protowire.ConsumeVarint(b[i:])
	case protowire.Fixed64Type:
		_, n = protowire.ConsumeFixed64(b[i:])
	case protowire.BytesType:
		f.data, n = protowire.ConsumeBytes(b[i:])
		f.off = i + n - len(f.data)
	case protowire.Fixed32Type:
		_, n = protowire.ConsumeFixed32(b[i:])
	case protowire.StartGroupType, protowire.EndGroupType:
		return field{}, 0, &wireError{i - n, errGroup}
	default:
		return field{}, 0, &wireError{i - n, errWireType}
	}
	if n < 0 {
		return field{}, 0, &wireError{i, parseError(n)}
	}
	return f, i + n, nil
}

func fieldNumberError(num uint64) error {
	return fmt.Errorf("illegal field number %d (valid: 1 to %d)", num, protowire.MaxValidNumber)
}

// parseError is protowire's error, "unexpected EOF" said as gogo says it.
func parseError(n int) error {
	if err := protowire.ParseError(n); err != io.ErrUnexpectedEOF {
		return err
	}
	return errTruncated
}

// wrongType is gogo's error for a known field with another wire type; at
// is the field's offset.
func wrongType(what string, f field, at int) error {
	return &wireError{at, fmt.Errorf("wrong wire type %d for field %s", f.typ, what)}
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

func parseProtobuf(body []byte, v *validator) ([]Batch, error) {
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return nil, reject.BadRequest("decode snappy body: %v", trimSnappy(err))
	}
	if v.lim.MaxDecodedBytes > 0 && n > v.lim.MaxDecodedBytes {
		return nil, reject.TooLarge("snappy body declares %d decoded bytes, limit %d", n, v.lim.MaxDecodedBytes)
	}
	if err := v.opt.reserve(n); err != nil {
		return nil, err
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
		return nil, reject.BadRequest("decode snappy body: %v", trimSnappy(err))
	}

	sc, err := scanPushRequest(b, v, st.labels[:0])
	if err != nil {
		return nil, err
	}
	if sc.total == 0 {
		return nil, errNoStreams()
	}
	refused := v.err(sc.entries + v.refusedEntries)
	if sc.streams == 0 {
		return nil, refused // nil if only empty streams: Loki accepts and writes nothing
	}
	fits := (v.lim.MaxRecordBytes <= 0 || len(body) <= v.lim.MaxRecordBytes) &&
		(v.lim.MaxRecordDecodedBytes <= 0 || len(b) <= v.lim.MaxRecordDecodedBytes)
	// A sharded cluster's streams are cut by shard: never forwarded whole.
	sharded := v.opt.Sharder != nil && v.opt.Sharder.Shards(sc.cluster) > 1
	if !sc.rewrite && refused == nil && fits && !sharded {
		return []Batch{{Cluster: strings.Clone(sc.cluster), Value: body, Entries: sc.entries, LineBytes: sc.lineBytes, Streams: sc.streams}}, nil
	}
	r, err := collectPushRequest(b, v, st.labels[:0], sc)
	if err != nil {
		return nil, err
	}
	batches, err := r.batches(v.lim, &v.opt)
	if err != nil {
		return nil, err
	}
	return batches, refused
}

// trimSnappy drops the "snappy: " prefix of snappy's errors, which the
// caller's message already says.
func trimSnappy(err error) string { return strings.TrimPrefix(err.Error(), "snappy: ") }

// requestScan summarises a validated PushRequest.
type requestScan struct {
	total     int    // streams
	streams   int    // streams with accepted entries
	entries   int    // accepted, over all streams
	lineBytes int    // of accepted entries, over all streams
	cluster   string // of the first stream with entries; aliases the request
	rewrite   bool   // some stream lacks the cluster label, or clusters differ
}

// scanPushRequest validates a decoded PushRequest without building it.
// Refused streams and entries are counted in v, not returned as errors.
func scanPushRequest(b []byte, v *validator, scratch []labelPair) (requestScan, error) {
	var sc requestScan
	for i := 0; i < len(b); {
		f, next, err := nextField(b, i)
		if err != nil {
			return sc, reject.BadRequest("decode protobuf PushRequest after stream %d: %v", sc.total, err)
		}
		at := i
		i = next
		switch f.num {
		case fPushStreams:
			if f.typ != protowire.BytesType {
				return sc, reject.BadRequest("decode protobuf PushRequest: %v", wrongType("streams", f, at))
			}
			st, err := scanStream(f.data, f.off, sc.total, v, scratch)
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
			if f.typ != protowire.BytesType {
				return sc, reject.BadRequest("decode protobuf PushRequest: %v", wrongType("format", f, at))
			}
		}
	}
	return sc, nil
}

type streamScan struct {
	entries    int // accepted
	lineBytes  int // of accepted entries
	cluster    string
	addCluster bool // the stream has no cluster label; cluster is the default
}

// scanStream validates one StreamAdapter at byte base of the request: its
// encoding (an error refuses the request), then its labels and entries as
// Loki validates them (a refusal is counted in v and leaves the stream or
// the entry out).
func scanStream(b []byte, base, idx int, v *validator, scratch []labelPair) (streamScan, error) {
	var st streamScan
	var labels []byte
	var (
		total, refused int
		firstRefused   int
		firstErr       error
		newest         int64 = noEntryYet
	)
	for i := 0; i < len(b); {
		f, next, err := nextField(b, i)
		if err != nil {
			return st, reject.BadRequest("stream %s: decode protobuf: %v", protoStreamName(b, idx), rebase(err, base))
		}
		switch f.num {
		case fStreamLabels:
			if f.typ != protowire.BytesType {
				return st, reject.BadRequest("stream %s: decode protobuf: %v", protoStreamName(b, idx), wrongType("labels", f, base+i))
			}
			labels = f.data // the last one wins, as in gogo
		case fStreamEntries:
			if f.typ != protowire.BytesType {
				return st, reject.BadRequest("stream %s: decode protobuf: %v", protoStreamName(b, idx), wrongType("entries", f, base+i))
			}
			e, err := scanEntry(f.data, base+f.off)
			if err != nil {
				return st, badStream(protoStreamName(b, idx), "entry %d: %v", total, err)
			}
			if err := v.checkEntry(e, &newest); err != nil {
				if refused == 0 {
					firstRefused, firstErr = total, err
				}
				refused++
			} else {
				st.entries++
				st.lineBytes += e.line
			}
			total++
		case fStreamHash:
			if f.typ != protowire.VarintType {
				return st, reject.BadRequest("stream %s: decode protobuf: %v", protoStreamName(b, idx), wrongType("hash", f, base+i))
			}
		}
		i = next
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
	if total == 0 {
		return st, nil // Loki parses the labels of an empty stream, then skips it
	}
	ls := normalize(pairs).override(v.opt)
	st.cluster = ls.cluster
	if ls.cluster == "" {
		st.cluster, st.addCluster = v.opt.DefaultCluster, true
	}
	if err := ls.checkStream(v.lim, v.opt.DefaultCluster, name); err != nil {
		v.refuseStream(total, err)
		return streamScan{}, nil
	}
	if refused > 0 {
		v.refuseEntries(refused, badStream(name(), "entry %d: %v", firstRefused, firstErr))
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
		if f.num == fStreamLabels && f.typ == protowire.BytesType {
			labels = f.data
		}
	}
	if len(labels) == 0 {
		return fmt.Sprintf("#%d", idx)
	}
	return streamName(string(labels))
}

// scanEntry decodes what the rules need of one EntryAdapter; an error is a
// malformed message, with its offset in b.
func scanEntry(b []byte, base int) (entryScan, error) {
	var (
		e           entryScan
		err         error
		name, value []byte
		f           field
	)
	for i := 0; i < len(b); {
		at := i
		if f, i, err = nextField(b, i); err != nil {
			return e, fmt.Errorf("decode protobuf: %w", rebase(err, base))
		}
		switch f.num {
		case fEntryTimestamp:
			if f.typ != protowire.BytesType {
				return e, fmt.Errorf("decode protobuf: %w", wrongType("timestamp", f, base+at))
			}
			if e.ts, err = scanTimestamp(f.data, base+f.off); err != nil {
				return e, err
			}
			e.hasTimestamp = true
		case fEntryLine:
			if f.typ != protowire.BytesType {
				return e, fmt.Errorf("decode protobuf: %w", wrongType("line", f, base+at))
			}
			e.line = len(f.data) // the last one wins, as in gogo
		case fEntryStructuredMetadata, fEntryParsed:
			if f.typ != protowire.BytesType {
				return e, fmt.Errorf("decode protobuf: %w", wrongType("structuredMetadata", f, base+at))
			}
			if name, value, err = scanPair(f.data, base+f.off); err != nil {
				return e, err
			}
			if f.num == fEntryStructuredMetadata {
				e.metaCount++
				if string(name) != detectedLevelLabel {
					e.metaBytes += len(name) + len(value)
				}
			}
		}
	}
	return e, nil
}

// scanTimestamp decodes a google.protobuf.Timestamp, checks its range as
// gogo's StdTimeUnmarshal does, and returns it in nanoseconds.
func scanTimestamp(b []byte, base int) (int64, error) {
	var s int64
	var ns int32
	for i := 0; i < len(b); {
		at := i
		f, next, err := nextField(b, i)
		if err != nil {
			return 0, fmt.Errorf("decode protobuf timestamp: %w", rebase(err, base))
		}
		i = next
		switch f.num {
		case fTimestampSeconds:
			if f.typ != protowire.VarintType {
				return 0, fmt.Errorf("decode protobuf timestamp: %w", wrongType("seconds", f, base+at))
			}
			s = int64(f.val)
		case fTimestampNanos:
			if f.typ != protowire.VarintType {
				return 0, fmt.Errorf("decode protobuf timestamp: %w", wrongType("nanos", f, base+at))
			}
			ns = int32(f.val) // as gogo decodes an int32
		}
	}
	if s < minTimestampSeconds || s >= maxTimestampSeconds || ns < 0 || ns >= 1e9 {
		return 0, &wireError{base, fmt.Errorf("invalid timestamp: seconds %d, nanos %d (valid: years 1 to 9999, nanos in [0, 1e9))", s, ns)}
	}
	return unixNano(s, ns), nil
}

// scanPair decodes a LabelPairAdapter.
func scanPair(b []byte, base int) (name, value []byte, err error) {
	for i := 0; i < len(b); {
		at := i
		var f field
		if f, i, err = nextField(b, i); err != nil {
			return nil, nil, fmt.Errorf("decode protobuf label pair: %w", rebase(err, base))
		}
		switch f.num {
		case fPairName:
			if f.typ != protowire.BytesType {
				return nil, nil, fmt.Errorf("decode protobuf label pair: %w", wrongType("name", f, base+at))
			}
			name = f.data
		case fPairValue:
			if f.typ != protowire.BytesType {
				return nil, nil, fmt.Errorf("decode protobuf label pair: %w", wrongType("value", f, base+at))
			}
			value = f.data
		}
	}
	return name, value, nil
}

func noName() string { return "" }

// collectPushRequest gathers a validated PushRequest for re-encoding: each
// stream with accepted entries, its cluster and its label string (rendered
// anew only where the cluster label is added), and every accepted entry's
// bytes as received. It applies the rules again, exactly as scanPushRequest
// did, to leave out what was refused.
func collectPushRequest(b []byte, v *validator, scratch []labelPair, sc requestScan) (*request, error) {
	// An entry can take 4 bytes of the request and 24 here: reserve them.
	if err := v.opt.reserve(sc.streams*int(unsafe.Sizeof(outStream{})) + sc.entries*int(unsafe.Sizeof(outEntry{}))); err != nil {
		return nil, err
	}
	r := &request{buf: b, streams: make([]outStream, 0, sc.streams), entries: make([]outEntry, 0, sc.entries)}
	for i := 0; i < len(b); {
		f, next, _ := nextField(b, i) // validated by scanPushRequest
		i = next
		switch f.num {
		case fPushFormat:
			r.format = alias(f.data)
		case fPushStreams:
			var labels []byte
			for j := 0; j < len(f.data); {
				g, next, _ := nextField(f.data, j)
				j = next
				if g.num == fStreamLabels {
					labels = g.data
				}
			}
			s := alias(labels)
			pairs, _ := parseLabels(s, scratch)
			ls := normalize(pairs).override(v.opt)
			st := outStream{cluster: ls.cluster, labels: s, from: len(r.entries)}
			if ls.cluster == "" {
				st.cluster = v.opt.DefaultCluster
			}
			st.shard = ls.shardOf(st.cluster, &v.opt)
			if ls.checkStream(v.lim, v.opt.DefaultCluster, noName) != nil {
				continue // refused whole, or empty
			}
			newest := int64(noEntryYet)
			for j := 0; j < len(f.data); {
				g, next, _ := nextField(f.data, j)
				j = next
				if g.num != fStreamEntries {
					continue
				}
				e, _ := scanEntry(g.data, 0)
				if v.checkEntry(e, &newest) == nil {
					r.entries = append(r.entries, outEntry{off: f.off + g.off, n: len(g.data), line: e.line})
				}
			}
			if len(r.entries) == st.from {
				continue
			}
			if ls.cluster == "" {
				st.labels = ls.render(st.cluster)
			}
			st.to = len(r.entries)
			r.streams = append(r.streams, st)
		}
	}
	return r, nil
}
