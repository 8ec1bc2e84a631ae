package logs

import (
	"bytes"
	"time"

	"github.com/valyala/fastjson"
)

// Format is how the lines of a file are read.
type Format string

const (
	// FormatContainer is a container runtime's log: CRI
	// (`<RFC3339Nano> <stdout|stderr> <P|F> <text>`) or Docker JSON
	// (`{"log":"…","stream":"stdout","time":"…"}`), detected per line.
	FormatContainer Format = "container"
	// FormatRaw ships every line as is, timestamped when read.
	FormatRaw Format = "raw"
	// FormatJSON ships every line as is, timestamped from a JSON field
	// (when read if the field is missing or not a time).
	FormatJSON Format = "json"
)

// physical is one line of a file, parsed.
type physical struct {
	ts      time.Time // zero: the line carries none
	stream  string    // stdout or stderr (container logs)
	partial bool      // more of the same line follows (CRI P, Docker without "\n")
	text    []byte    // the log text, aliasing the input or the parser's memory
}

// parseCRI parses `<time> <stream> <tag> <text>`: time RFC 3339 with
// nanoseconds, stream stdout or stderr, tag P (partial) or F (full; tags
// may carry more, colon-separated, as the CRI allows).
func parseCRI(line []byte) (physical, bool) {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return physical{}, false
	}
	ts, err := time.Parse(time.RFC3339Nano, string(line[:sp]))
	if err != nil {
		return physical{}, false
	}
	rest := line[sp+1:]
	var stream string
	switch {
	case bytes.HasPrefix(rest, []byte("stdout ")):
		stream, rest = "stdout", rest[7:]
	case bytes.HasPrefix(rest, []byte("stderr ")):
		stream, rest = "stderr", rest[7:]
	default:
		return physical{}, false
	}
	tag := rest
	text := []byte{}
	if sp := bytes.IndexByte(rest, ' '); sp >= 0 {
		tag, text = rest[:sp], rest[sp+1:]
	}
	if i := bytes.IndexByte(tag, ':'); i >= 0 {
		tag = tag[:i]
	}
	var partial bool
	switch string(tag) {
	case "P":
		partial = true
	case "F":
	default:
		return physical{}, false
	}
	return physical{ts: ts, stream: stream, partial: partial, text: text}, true
}

// parseDocker parses one line of Docker's json-file driver. A "log" value
// without a trailing newline is a part of a longer line (Docker splits at
// 16 KiB). text aliases p's memory: valid until p parses again.
func parseDocker(line []byte, p *fastjson.Parser) (physical, bool) {
	v, err := p.ParseBytes(line)
	if err != nil || v.Type() != fastjson.TypeObject {
		return physical{}, false
	}
	lv := v.Get("log")
	if lv == nil || lv.Type() != fastjson.TypeString {
		return physical{}, false
	}
	text := lv.GetStringBytes()
	var stream string
	switch string(v.GetStringBytes("stream")) {
	case "stdout":
		stream = "stdout"
	case "stderr":
		stream = "stderr"
	default:
		return physical{}, false
	}
	ts, err := time.Parse(time.RFC3339Nano, string(v.GetStringBytes("time")))
	if err != nil {
		return physical{}, false
	}
	partial := true
	if n := len(text); n > 0 && text[n-1] == '\n' {
		text, partial = text[:n-1], false
	}
	return physical{ts: ts, stream: stream, partial: partial, text: text}, true
}

// parseContainer detects the format of one container log line.
func parseContainer(line []byte, p *fastjson.Parser) (physical, bool) {
	if len(line) > 0 && line[0] == '{' {
		return parseDocker(line, p)
	}
	return parseCRI(line)
}

// jsonTimestamp reads the time at path (keys of nested objects) of a JSON
// line: an RFC 3339 string, or a number of seconds since the epoch.
func jsonTimestamp(line []byte, path []string, p *fastjson.Parser) (time.Time, bool) {
	v, err := p.ParseBytes(line)
	if err != nil {
		return time.Time{}, false
	}
	f := v.Get(path...)
	if f == nil {
		return time.Time{}, false
	}
	switch f.Type() {
	case fastjson.TypeString:
		ts, err := time.Parse(time.RFC3339Nano, string(f.GetStringBytes()))
		return ts, err == nil
	case fastjson.TypeNumber:
		s := f.GetFloat64()
		if s <= 0 || s > 1e11 {
			return time.Time{}, false
		}
		sec := int64(s)
		return time.Unix(sec, int64((s-float64(sec))*1e9)), true
	}
	return time.Time{}, false
}

// joiner puts the parts of one stream's long line back together, keeping
// at most max bytes: what is beyond is cut (and counted by the caller).
type joiner struct {
	buf     []byte
	ts      time.Time
	start   int64 // file offset of the first part; -1: no pending part
	cut     bool
	pending bool
}

// add appends one part; it returns the whole line when the part is the
// last one. The returned slice is valid until the next add.
func (j *joiner) add(ph physical, off int64, max int) (line []byte, ts time.Time, cut, done bool) {
	if !j.pending {
		j.pending, j.ts, j.start, j.cut = true, ph.ts, off, false
		j.buf = j.buf[:0]
	}
	room := max - len(j.buf)
	if len(ph.text) > room {
		j.buf = append(j.buf, ph.text[:room]...)
		j.cut = true
	} else {
		j.buf = append(j.buf, ph.text...)
	}
	if ph.partial {
		return nil, time.Time{}, false, false
	}
	j.pending = false
	line, ts, cut = j.buf, j.ts, j.cut
	if cap(j.buf) > 64<<10 {
		// Keep no large buffer per stream after a long line: 100 files
		// with two streams each would hold it for ever.
		j.buf = nil
	}
	return line, ts, cut, true
}
