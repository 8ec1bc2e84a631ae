package lokipush

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tributary-io/tributary/pkg/reject"
)

// The JSON push body, as Loki's v1 push path reads it
// (pkg/loghttp/query.go, LogProtoStream.UnmarshalJSON):
//
//	{"streams": [{"stream": {"name": "value", ...},
//	              "values": [["<unix ns>", "<line>", {"name": "value", ...}], ...]}]}
//
// Unknown keys are ignored and a repeated key's last value wins; null streams,
// null "values" and null entries are skipped; an entry holds a timestamp
// string, then optionally a line and structured metadata (kept in order);
// further elements are ignored. Strings decode as encoding/json decodes them.
//
// It is parsed by hand, in one pass over the body and without copying
// strings that have no escapes: encoding/json cannot keep structured
// metadata in order without a custom decoder, and is several times slower.
// github.com/valyala/fastjson keeps order and walks this body ~25% faster
// (BenchmarkJSONTokenLayer), but cannot give encoding/json's strings: it
// leaves an unpaired surrogate escape as the text "\ud800" (the same text
// an escaped backslash gives, so no later pass can tell them apart), accepts
// control characters and invalid UTF-8 in strings, and stops at 300 levels
// of nesting. Loki decodes with encoding/json semantics, so the hand-written
// tokenizer stays.

// maxJSONDepth bounds the nesting of skipped values, as encoding/json does.
const maxJSONDepth = 10000

type jsonParser struct {
	b   []byte
	i   int
	opt *Options // reserves memory before the slices below grow

	streams []jsonStream
	labels  []labelPair // stream labels, all streams
	entries []jsonEntry // all streams
	meta    []labelPair // structured metadata, all entries
	arena   []byte      // current chunk for strings that needed unescaping
}

// room makes room for one more element in s, reserving the new array
// before allocating it: a body of tiny entries costs more memory parsed
// than as text.
func room[T any](p *jsonParser, s []T) ([]T, error) {
	if len(s) < cap(s) {
		return s, nil
	}
	var zero T
	n := max(2*cap(s), 64)
	if err := p.opt.reserve(n * int(unsafe.Sizeof(zero))); err != nil {
		return s, err
	}
	return slices.Grow(s, n-len(s)), nil
}

// arenaChunk is the least the arena allocates at once.
const arenaChunk = 64 << 10

type jsonStream struct {
	hasLabels            bool
	labelsFrom, labelsTo int
	entriesFrom          int
	entriesTo            int
}

type jsonEntry struct {
	ts, line         string
	metaFrom, metaTo int
	hasTimestamp     bool
}

func parseJSON(body []byte, v *validator) ([]Batch, error) {
	p := jsonParser{b: body, opt: &v.opt}
	if err := p.parse(); err != nil {
		return nil, err
	}
	if len(p.streams) == 0 {
		return nil, errNoStreams()
	}
	r, err := p.request(v)
	if err != nil {
		return nil, err
	}
	refused := v.err(len(r.entries) + v.refusedEntries)
	if len(r.streams) == 0 {
		return nil, refused // nil if only empty streams: Loki accepts and writes nothing
	}
	batches, err := r.batches(v.lim, &v.opt)
	if err != nil {
		return nil, err
	}
	return batches, refused
}

func (p *jsonParser) errorf(format string, args ...any) error {
	return reject.BadRequest("decode JSON at offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *jsonParser) parse() error {
	more, err := p.beginObject()
	for ; more; more, err = p.nextMember() {
		key, err := p.key()
		if err != nil {
			return err
		}
		if key == "streams" {
			p.streams, p.labels, p.entries, p.meta = p.streams[:0], p.labels[:0], p.entries[:0], p.meta[:0]
			err = p.streamList()
		} else {
			err = p.skip(1)
		}
		if err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	if p.ws(); p.i != len(p.b) {
		return p.errorf("unexpected data after the top-level object")
	}
	return nil
}

func (p *jsonParser) streamList() error {
	if p.null() {
		return nil
	}
	more, err := p.beginArray()
	for ; more; more, err = p.nextElement() {
		if p.null() {
			continue
		}
		if err := p.stream(); err != nil {
			return err
		}
	}
	return err
}

func (p *jsonParser) stream() error {
	s := jsonStream{entriesFrom: len(p.entries), entriesTo: len(p.entries)}
	more, err := p.beginObject()
	for ; more; more, err = p.nextMember() {
		key, err := p.key()
		if err != nil {
			return err
		}
		switch key {
		case "stream":
			s.hasLabels, s.labelsFrom = true, len(p.labels)
			p.labels, err = p.stringObject(p.labels, len(p.streams), -1)
			s.labelsTo = len(p.labels)
		case "values":
			s.entriesFrom = len(p.entries)
			err = p.values(len(p.streams))
			s.entriesTo = len(p.entries)
		default:
			err = p.skip(1)
		}
		if err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	if p.streams, err = room(p, p.streams); err != nil {
		return err
	}
	p.streams = append(p.streams, s)
	return nil
}

func (p *jsonParser) values(stream int) error {
	if p.null() {
		return nil
	}
	from := len(p.entries)
	more, err := p.beginArray()
	for ; more; more, err = p.nextElement() {
		if p.null() {
			continue
		}
		if err := p.entry(stream, len(p.entries)-from); err != nil {
			return err
		}
	}
	return err
}

func (p *jsonParser) entry(stream, n int) error {
	e := jsonEntry{metaFrom: len(p.meta), metaTo: len(p.meta)}
	more, err := p.beginArray()
	for i := 0; more; i++ {
		switch i {
		case 0, 1:
			p.ws()
			if p.i >= len(p.b) || p.b[p.i] != '"' {
				what := "timestamp"
				if i == 1 {
					what = "line"
				}
				return p.errorf("stream #%d entry %d: %s must be a string", stream, n, what)
			}
			var s string
			if s, err = p.str(); i == 0 {
				e.ts, e.hasTimestamp = s, true
			} else {
				e.line = s
			}
		case 2:
			e.metaFrom = len(p.meta)
			p.meta, err = p.stringObject(p.meta, stream, n)
			e.metaTo = len(p.meta)
		default:
			err = p.skip(1)
		}
		if err != nil {
			return err
		}
		if more, err = p.nextElement(); err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	if p.entries, err = room(p, p.entries); err != nil {
		return err
	}
	p.entries = append(p.entries, e)
	return nil
}

// stringObject reads an object whose values are all strings, appending its
// members in order: the labels of stream #stream (entry < 0) or the
// structured metadata of one of its entries.
func (p *jsonParser) stringObject(dst []labelPair, stream, entry int) ([]labelPair, error) {
	more, err := p.beginObject()
	for ; more; more, err = p.nextMember() {
		k, err := p.key()
		if err != nil {
			return dst, err
		}
		if p.ws(); p.i >= len(p.b) || p.b[p.i] != '"' {
			if entry < 0 {
				return dst, p.errorf("stream #%d: value of label %q must be a string", stream, short(k))
			}
			return dst, p.errorf("stream #%d entry %d: value of structured metadata %q must be a string", stream, entry, short(k))
		}
		v, err := p.str()
		if err != nil {
			return dst, err
		}
		if dst, err = room(p, dst); err != nil {
			return dst, err
		}
		dst = append(dst, labelPair{name: k, value: v})
	}
	return dst, err
}

// request validates the parsed streams as Loki would and encodes their
// accepted entries as EntryAdapter messages. Refused streams and entries
// are counted in v.
func (p *jsonParser) request(v *validator) (*request, error) {
	size := 0
	for _, e := range p.entries {
		size += len(e.line) + 24
		for _, m := range p.meta[e.metaFrom:e.metaTo] {
			size += len(m.name) + len(m.value) + 8
		}
	}
	if err := v.opt.reserve(size); err != nil {
		return nil, err
	}
	r := &request{buf: make([]byte, 0, size), streams: make([]outStream, 0, len(p.streams)), entries: make([]outEntry, 0, len(p.entries))}
	for i, s := range p.streams {
		pairs := p.labels[s.labelsFrom:s.labelsTo]
		pairs = lastWins(pairs)
		for _, l := range pairs {
			if !validLabelName(l.name) {
				return nil, badStream(streamName(labelSet{pairs: pairs}.render("")), "error parsing labels: invalid label name %q", short(l.name))
			}
		}
		if s.entriesTo == s.entriesFrom {
			continue // Loki parses the labels of an empty stream, then skips it
		}
		ls := normalize(pairs).override(v.opt)
		name := func() string {
			if !s.hasLabels {
				return fmt.Sprintf("#%d", i)
			}
			return streamName(ls.render(""))
		}
		// Timestamps that do not parse fail Loki's decoding of the whole
		// body, before any rule applies.
		entries := p.entries[s.entriesFrom:s.entriesTo]
		for j, e := range entries {
			if !e.hasTimestamp {
				return nil, badStream(name(), "entry %d: entry has no timestamp", j)
			}
			if _, ok := parseTimestamp(e.ts); !ok {
				return nil, badStream(name(), "entry %d: timestamp %q is not an integer of nanoseconds", j, short(e.ts))
			}
		}
		if err := ls.checkStream(v.lim, v.opt.DefaultCluster, name); err != nil {
			v.refuseStream(len(entries), err)
			continue
		}
		st := outStream{cluster: ls.cluster, labels: ls.render(""), from: len(r.entries)}
		if ls.cluster == "" {
			st.cluster = v.opt.DefaultCluster
			st.labels = ls.render(st.cluster)
		}
		st.shard = ls.shardOf(st.cluster, &v.opt)
		var (
			refused, firstRefused int
			firstErr              error
			newest                int64 = noEntryYet
		)
		for j, e := range entries {
			ts, _ := parseTimestamp(e.ts)
			meta := p.meta[e.metaFrom:e.metaTo]
			metaBytes := 0
			for _, m := range meta {
				if m.name != detectedLevelLabel {
					metaBytes += len(m.name) + len(m.value)
				}
			}
			es := entryScan{ts: ts, hasTimestamp: true, line: len(e.line), metaCount: len(meta), metaBytes: metaBytes}
			if err := v.checkEntry(es, &newest); err != nil {
				if refused == 0 {
					firstRefused, firstErr = j, err
				}
				refused++
				continue
			}
			off := len(r.buf)
			r.buf = appendEntry(r.buf, ts, e.line, meta)
			r.entries = append(r.entries, outEntry{off: off, n: len(r.buf) - off, line: len(e.line)})
		}
		if refused > 0 {
			v.refuseEntries(refused, badStream(name(), "entry %d: %v", firstRefused, firstErr))
		}
		if st.to = len(r.entries); st.to > st.from {
			r.streams = append(r.streams, st)
		}
	}
	return r, nil
}

// lastWins sorts pairs by name and keeps the last of each name, as a JSON
// object decoded into Loki's LabelSet map does.
func lastWins(pairs []labelPair) []labelPair {
	if len(pairs) < 2 {
		return pairs
	}
	slices.SortStableFunc(pairs, func(a, b labelPair) int { return strings.Compare(a.name, b.name) })
	out := pairs[:0]
	for i, l := range pairs {
		if i+1 < len(pairs) && pairs[i+1].name == l.name {
			continue
		}
		out = append(out, l)
	}
	return out
}

// parseTimestamp parses Loki's JSON timestamp: an optional '-' and decimal
// digits, fitting int64 nanoseconds since the epoch.
func parseTimestamp(s string) (int64, bool) {
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	if s == "" {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if v > (1<<63)/10 {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
		if v > 1<<63 {
			return 0, false
		}
	}
	if neg {
		return -int64(v), true // -(1<<63) wraps to itself, which is right
	}
	if v == 1<<63 {
		return 0, false
	}
	return int64(v), true
}

// appendEntry encodes an EntryAdapter as gogo's Marshal would.
func appendEntry(b []byte, ns int64, line string, meta []labelPair) []byte {
	secs, nanos := ns/1e9, ns%1e9
	if nanos < 0 {
		secs, nanos = secs-1, nanos+1e9
	}
	tsLen := 0
	if secs != 0 {
		tsLen += 1 + protowire.SizeVarint(uint64(secs))
	}
	if nanos != 0 {
		tsLen += 1 + protowire.SizeVarint(uint64(nanos))
	}
	b = protowire.AppendTag(b, fEntryTimestamp, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(tsLen))
	if secs != 0 {
		b = protowire.AppendTag(b, fTimestampSeconds, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(secs))
	}
	if nanos != 0 {
		b = protowire.AppendTag(b, fTimestampNanos, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(nanos))
	}
	if line != "" {
		b = appendString(b, fEntryLine, line)
	}
	for _, m := range meta {
		n := 0
		if m.name != "" {
			n += fieldSize(len(m.name))
		}
		if m.value != "" {
			n += fieldSize(len(m.value))
		}
		b = protowire.AppendTag(b, fEntryStructuredMetadata, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		if m.name != "" {
			b = appendString(b, fPairName, m.name)
		}
		if m.value != "" {
			b = appendString(b, fPairValue, m.value)
		}
	}
	return b
}

// ---- tokens ----

func (p *jsonParser) ws() {
	for p.i < len(p.b) && isJSONSpace(p.b[p.i]) {
		p.i++
	}
}

// null consumes a null literal if one is next.
func (p *jsonParser) null() bool {
	p.ws()
	if len(p.b)-p.i >= 4 && string(p.b[p.i:p.i+4]) == "null" {
		p.i += 4
		return true
	}
	return false
}

// beginObject consumes '{' and reports whether a member follows.
func (p *jsonParser) beginObject() (bool, error) { return p.begin('{', '}', "an object") }

// nextMember consumes ',' (another member follows) or '}'.
func (p *jsonParser) nextMember() (bool, error) { return p.next('}') }

// beginArray consumes '[' and reports whether an element follows.
func (p *jsonParser) beginArray() (bool, error) { return p.begin('[', ']', "an array") }

// nextElement consumes ',' (another element follows) or ']'.
func (p *jsonParser) nextElement() (bool, error) { return p.next(']') }

// begin consumes open and reports whether anything precedes close.
func (p *jsonParser) begin(open, close byte, what string) (bool, error) {
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != open {
		return false, p.errorf("expected %s", what)
	}
	p.i++
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == close {
		p.i++
		return false, nil
	}
	return true, nil
}

// next consumes ',' (more follows) or close.
func (p *jsonParser) next(close byte) (bool, error) {
	p.ws()
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case ',':
			p.i++
			return true, nil
		case close:
			p.i++
			return false, nil
		}
	}
	return false, p.errorf(`expected "," or "%c"`, close)
}

// key reads a member name and its ':'.
func (p *jsonParser) key() (string, error) {
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return "", p.errorf("expected a member name")
	}
	k, err := p.str()
	if err != nil {
		return "", err
	}
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != ':' {
		return "", p.errorf(`expected ":"`)
	}
	p.i++
	return k, nil
}

// skip validates and skips one value.
func (p *jsonParser) skip(depth int) error {
	if depth > maxJSONDepth {
		return p.errorf("nesting too deep")
	}
	p.ws()
	if p.i >= len(p.b) {
		return p.errorf("unexpected end of input")
	}
	switch c := p.b[p.i]; {
	case c == '{':
		more, err := p.beginObject()
		for ; more; more, err = p.nextMember() {
			if _, err := p.key(); err != nil {
				return err
			}
			if err := p.skip(depth + 1); err != nil {
				return err
			}
		}
		return err
	case c == '[':
		more, err := p.beginArray()
		for ; more; more, err = p.nextElement() {
			if err := p.skip(depth + 1); err != nil {
				return err
			}
		}
		return err
	case c == '"':
		_, err := p.str()
		return err
	case c == '-' || ('0' <= c && c <= '9'):
		return p.number()
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	}
	return p.errorf("unexpected character %q", p.b[p.i])
}

func (p *jsonParser) literal(lit string) error {
	if len(p.b)-p.i < len(lit) || string(p.b[p.i:p.i+len(lit)]) != lit {
		return p.errorf("invalid literal")
	}
	p.i += len(lit)
	return nil
}

func (p *jsonParser) number() error {
	b, i := p.b, p.i
	digits := func() bool {
		start := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i > start
	}
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return p.errorf("invalid number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return p.errorf("invalid number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return p.errorf("invalid number")
		}
	}
	p.i = i
	return nil
}

// str reads the string at p.b[p.i] (which is '"'). Without escapes or
// invalid UTF-8 it returns the bytes in place (valid while Parse runs).
func (p *jsonParser) str() (string, error) {
	b := p.b
	start := p.i + 1
	ascii := true
	for i := start; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '"':
			if !ascii && !utf8.Valid(b[start:i]) {
				return p.strSlow(start, start)
			}
			p.i = i + 1
			return alias(b[start:i]), nil
		case c == '\\' || c < 0x20:
			if !ascii { // the prefix may hold invalid UTF-8: decode it too
				return p.strSlow(start, start)
			}
			return p.strSlow(start, i)
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	p.i = len(b)
	return "", p.errorf("unterminated string")
}

// strSlow decodes a string from start whose plain prefix ends at i, exactly
// as encoding/json does: invalid UTF-8 and unpaired surrogates become U+FFFD.
// It appends the result to the arena, a chunk whose bytes are never
// rewritten once a string refers to them; a full chunk is left to the strings
// in it and a new one started.
func (p *jsonParser) strSlow(start, i int) (string, error) {
	b := p.b
	if raw := rawStringLen(b[start:]); cap(p.arena)-len(p.arena) < raw {
		n := max(arenaChunk, raw)
		if err := p.opt.reserve(n); err != nil {
			return "", err
		}
		p.arena = make([]byte, 0, n)
	}
	from := len(p.arena)
	out := append(p.arena, b[start:i]...)
	for i < len(b) {
		j := i
		for j < len(b) && b[j] >= 0x20 && b[j] != '"' && b[j] != '\\' && b[j] < utf8.RuneSelf {
			j++
		}
		out = append(out, b[i:j]...)
		if i = j; i == len(b) {
			break
		}
		switch c := b[i]; {
		case c == '"':
			p.i = i + 1
			p.arena = out
			if len(out) == from {
				return "", nil
			}
			return unsafe.String(&out[from], len(out)-from), nil
		case c == '\\':
			if i+1 >= len(b) {
				p.i = i
				return "", p.errorf("unterminated string")
			}
			switch e := b[i+1]; e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r := hex4(b[i+2:])
				if r < 0 {
					p.i = i
					return "", p.errorf("invalid \\u escape")
				}
				i += 6
				if utf16.IsSurrogate(r) {
					if len(b)-i >= 6 && b[i] == '\\' && b[i+1] == 'u' {
						if dec := utf16.DecodeRune(r, hex4(b[i+2:])); dec != unicode.ReplacementChar {
							i += 6
							out = utf8.AppendRune(out, dec)
							continue
						}
					}
					r = unicode.ReplacementChar
				}
				out = utf8.AppendRune(out, r)
				continue
			default:
				p.i = i
				return "", p.errorf("invalid escape \\%c", e)
			}
			i += 2
		case c < 0x20:
			p.i = i
			return "", p.errorf("control character in string")
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				out = utf8.AppendRune(out, utf8.RuneError)
			} else {
				out = append(out, b[i:i+size]...)
			}
			i += size
		}
	}
	p.i = len(b)
	return "", p.errorf("unterminated string")
}

// rawStringLen is the length of the string body starting at b[0], up to its
// closing quote (or the end of b): a bound on its decoded length unless it
// holds invalid UTF-8.
func rawStringLen(b []byte) int {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			return i
		case '\\':
			i++
		}
	}
	return len(b)
}

// hex4 decodes four hex digits, or returns -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}
