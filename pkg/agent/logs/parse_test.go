package logs

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fastjson"
)

func TestParseContainer(t *testing.T) {
	ts := time.Date(2026, 11, 29, 6, 0, 0, 123456789, time.UTC)
	for _, tc := range []struct {
		name, line string
		ok         bool
		want       physical
	}{
		{"cri full", "2026-11-29T06:00:00.123456789Z stdout F hello world", true, physical{ts: ts, stream: "stdout", text: []byte("hello world")}},
		{"cri partial", "2026-11-29T06:00:00.123456789Z stderr P part", true, physical{ts: ts, stream: "stderr", partial: true, text: []byte("part")}},
		{"cri empty text", "2026-11-29T06:00:00.123456789Z stdout F", true, physical{ts: ts, stream: "stdout", text: []byte{}}},
		{"cri offset time", "2026-11-29T07:00:00.123456789+01:00 stdout F x", true, physical{ts: ts, stream: "stdout", text: []byte("x")}},
		{"cri tag with more", "2026-11-29T06:00:00.123456789Z stdout F:x y", true, physical{ts: ts, stream: "stdout", text: []byte("y")}},
		{"cri bad stream", "2026-11-29T06:00:00.123456789Z stdin F x", false, physical{}},
		{"cri bad tag", "2026-11-29T06:00:00.123456789Z stdout X x", false, physical{}},
		{"cri bad time", "yesterday stdout F x", false, physical{}},
		{"docker full", `{"log":"hello \"q\"\n","stream":"stdout","time":"2026-11-29T06:00:00.123456789Z"}`, true, physical{ts: ts, stream: "stdout", text: []byte(`hello "q"`)}},
		{"docker partial", `{"log":"part","stream":"stderr","time":"2026-11-29T06:00:00.123456789Z"}`, true, physical{ts: ts, stream: "stderr", partial: true, text: []byte("part")}},
		{"docker no time", `{"log":"x\n","stream":"stdout"}`, false, physical{}},
		{"docker bad json", `{"log":"x\n","stream":"stdout"`, false, physical{}},
		{"raw text", "plain line", false, physical{}},
		{"empty", "", false, physical{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p fastjson.Parser
			got, ok := parseContainer([]byte(tc.line), &p)
			require.Equal(t, tc.ok, ok)
			if !tc.ok {
				return
			}
			require.True(t, tc.want.ts.Equal(got.ts), "time %s", got.ts)
			require.Equal(t, tc.want.stream, got.stream)
			require.Equal(t, tc.want.partial, got.partial)
			require.Equal(t, string(tc.want.text), string(got.text))
		})
	}
}

func TestJoinerCutsAtMax(t *testing.T) {
	var j joiner
	ts := time.Unix(100, 0)
	_, _, _, done := j.add(physical{ts: ts, partial: true, text: []byte("aaaa")}, 10, 6)
	require.False(t, done)
	require.True(t, j.pending)
	require.Equal(t, int64(10), j.start)
	_, _, _, done = j.add(physical{ts: ts.Add(time.Second), partial: true, text: []byte("bbbb")}, 40, 6)
	require.False(t, done)
	line, gotTS, cut, done := j.add(physical{ts: ts.Add(2 * time.Second), text: []byte("cc")}, 80, 6)
	require.True(t, done)
	require.True(t, cut)
	require.Equal(t, "aaaabb", string(line))
	require.True(t, ts.Equal(gotTS), "the first part's time is the line's")
	line, _, cut, done = j.add(physical{ts: ts, text: []byte("short")}, 90, 6)
	require.True(t, done)
	require.False(t, cut)
	require.Equal(t, "short", string(line))
}

func TestJSONTimestamp(t *testing.T) {
	var p fastjson.Parser
	ts, ok := jsonTimestamp([]byte(`{"a":{"b":"2026-11-29T06:00:00.5Z"}}`), []string{"a", "b"}, &p)
	require.True(t, ok)
	require.Equal(t, time.Date(2026, 11, 29, 6, 0, 0, 5e8, time.UTC), ts.UTC())
	ts, ok = jsonTimestamp([]byte(`{"ts":1764396000.25}`), []string{"ts"}, &p)
	require.True(t, ok)
	require.Equal(t, int64(1764396000250000000), ts.UnixNano())
	_, ok = jsonTimestamp([]byte(`{"ts":"soon"}`), []string{"ts"}, &p)
	require.False(t, ok)
	_, ok = jsonTimestamp([]byte(`not json`), []string{"ts"}, &p)
	require.False(t, ok)
}

// FuzzParseContainer: any line parses or is refused without a panic, and
// what parses has a stream, a time, and text taken from the line.
func FuzzParseContainer(f *testing.F) {
	for _, s := range []string{
		"2026-11-29T06:00:00.123456789Z stdout F hello",
		"2026-11-29T06:00:00Z stderr P part",
		`{"log":"x\n","stream":"stdout","time":"2026-11-29T06:00:00Z"}`,
		`{"log":"\u00e9\ud83d","stream":"stderr","time":"2026-11-29T06:00:00.1+02:00"}`,
		"",
		"{",
	} {
		f.Add([]byte(s))
	}
	var p fastjson.Parser
	f.Fuzz(func(t *testing.T, line []byte) {
		got, ok := parseContainer(line, &p)
		if !ok {
			return
		}
		if got.stream != "stdout" && got.stream != "stderr" {
			t.Fatalf("stream %q", got.stream)
		}
		if got.ts.IsZero() {
			t.Fatal("no time")
		}
		if line[0] != '{' && !strings.Contains(string(line), string(got.text)) {
			t.Fatalf("CRI text %q not in the line", got.text)
		}
	})
}
