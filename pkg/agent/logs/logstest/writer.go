// Package logstest writes container log files the way container runtimes
// and rotators do, for the tests of the log tailer (unit and pipeline).
package logstest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Writer appends CRI lines with strictly increasing timestamps to one
// path, and rotates it by rename (the kubelet) or copytruncate
// (logrotate).
type Writer struct {
	t    testing.TB
	Path string
	f    *os.File
	// TS is the time of the last line written.
	TS time.Time
}

// NewWriter creates path (and its directories). The first line is
// timestamped an hour ago: inside every age window of the gateway and
// Loki, and never in the future.
func NewWriter(t testing.TB, path string) *Writer {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	w := &Writer{t: t, Path: path, TS: time.Now().Add(-time.Hour)}
	w.Reopen()
	t.Cleanup(func() { w.f.Close() })
	return w
}

// Reopen opens the path again for appending (creating it), as a runtime
// does after a rotation.
func (w *Writer) Reopen() {
	w.t.Helper()
	if w.f != nil {
		w.f.Close()
	}
	f, err := os.OpenFile(w.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	w.f = f
}

// Raw appends s as is.
func (w *Writer) Raw(s string) {
	w.t.Helper()
	if _, err := w.f.WriteString(s); err != nil {
		w.t.Fatal(err)
	}
}

// CRI appends one CRI line: stream stdout or stderr, tag P or F.
func (w *Writer) CRI(stream, tag, text string) {
	w.t.Helper()
	w.TS = w.TS.Add(time.Microsecond)
	w.Raw(fmt.Sprintf("%s %s %s %s\n", w.TS.UTC().Format(time.RFC3339Nano), stream, tag, text))
}

// Docker appends one line of Docker's json-file driver; text is one
// line's part (partial: no newline is added to it).
func (w *Writer) Docker(stream, text string, partial bool) {
	w.t.Helper()
	w.TS = w.TS.Add(time.Microsecond)
	if !partial {
		text += "\n"
	}
	w.Raw(fmt.Sprintf(`{"log":%q,"stream":%q,"time":%q}`+"\n", text, stream, w.TS.UTC().Format(time.RFC3339Nano)))
}

// Lines appends full stdout lines Line(i) for i in [from, to).
func (w *Writer) Lines(from, to int) {
	w.t.Helper()
	for i := from; i < to; i++ {
		w.CRI("stdout", "F", Line(i))
	}
}

// Line is the text of line i written by Lines.
func Line(i int) string { return fmt.Sprintf("line %d", i) }

// Seq is Line(i) for i in [from, to).
func Seq(from, to int) []string {
	out := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, Line(i))
	}
	return out
}

// Rename moves the file to <path>.<suffix> and creates a new one at the
// path, as the kubelet rotates (0.log → 0.log.20261129-061500).
func (w *Writer) Rename(suffix string) {
	w.t.Helper()
	if err := os.Rename(w.Path, w.Path+"."+suffix); err != nil {
		w.t.Fatal(err)
	}
	w.Reopen()
}

// CopyTruncate copies the file to <path>.<suffix> and truncates it in
// place, as logrotate's copytruncate.
func (w *Writer) CopyTruncate(suffix string) {
	w.t.Helper()
	data, err := os.ReadFile(w.Path)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(w.Path+"."+suffix, data, 0o644); err != nil {
		w.t.Fatal(err)
	}
	if err := w.f.Truncate(0); err != nil {
		w.t.Fatal(err)
	}
}

// SameLines fails t with the first difference between want and got (not
// the whole lists, which may hold thousands of lines).
func SameLines(t testing.TB, want, got []string, what string) {
	t.Helper()
	for i := 0; i < len(want) || i < len(got); i++ {
		var wl, gl string
		if i < len(want) {
			wl = want[i]
		}
		if i < len(got) {
			gl = got[i]
		}
		if wl != gl {
			t.Fatalf("%s: %d lines, want %d; first difference at %d: got %.80q, want %.80q", what, len(got), len(want), i, gl, wl)
		}
	}
}
