package logs

import (
	"bytes"
	"errors"
	"io"
	"os"
	"time"
)

// fileState is one file (one identity) of a group: the current file, a
// rotated one still to finish, or a finished one kept so that it is not
// read again while it lies in the directory.
type fileState struct {
	path  string
	id    fileID
	fp    []byte   // first bytes, up to fingerprintBytes
	f     *os.File // nil once closed
	seq   uint64   // reading order within the group
	size  int64    // at the last scan
	mtime time.Time

	read  int64 // the next byte to read
	safe  int64 // where a restart must begin to repeat nothing unshipped
	acked int64 // the gateway acknowledged everything before this offset

	current    bool      // at the group's path
	rotatedAt  time.Time // when seen away from the group's path (zero: never)
	goneAt     time.Time // when seen deleted or its inode overwritten (zero: present)
	done       bool      // read to the end and closed
	lastErr    error
	unclaimed  bool // not seen by the last scan
	wasCurrent bool

	// Parsing state: per-stream partial lines, a physical line longer
	// than the read buffer, and the last good line's time and stream
	// (given to a malformed line, so it keeps its place).
	joiners    [2]joiner // stdout, stderr
	long       []byte
	longStart  int64
	inLong     bool
	lastTS     time.Time
	lastStream string
}

func streamIndex(s string) int {
	if s == "stderr" {
		return 1
	}
	return 0
}

// safeOffset is the offset a restart resumes at after the line ending at
// end: before any part of a line not yet complete.
func (fs *fileState) safeOffset(end int64) int64 {
	s := end
	for i := range fs.joiners {
		if j := &fs.joiners[i]; j.pending && j.start < s {
			s = j.start
		}
	}
	if fs.inLong && fs.longStart < s {
		s = fs.longStart
	}
	return s
}

func (fs *fileState) close() {
	if fs.f != nil {
		fs.f.Close()
		fs.f = nil
	}
}

// readBufSize is the unit of reading; a line longer than this is
// collected in fileState.long, up to the line bound.
const readBufSize = 64 << 10

// lineFunc handles one physical line (without its newline) that starts at
// offset start and ends (newline included) at end.
type lineFunc func(fs *fileState, line []byte, start, end int64) error

// readLines reads fs from fs.read for up to budget bytes and calls fn for
// every complete line. A last line without its newline is left for later
// unless final (the file is finished: nobody writes to it any more). It
// returns the bytes consumed and whether the end of the file was reached.
func readLines(fs *fileState, buf []byte, budget int, maxPhys int, final bool, fn lineFunc) (int, bool, error) {
	total := 0
	for total < budget {
		n, err := fs.f.ReadAt(buf, fs.read)
		if err != nil && !errors.Is(err, io.EOF) {
			return total, false, err
		}
		if n == 0 {
			if final && fs.inLong {
				line := fs.long
				fs.inLong = false
				if err := fn(fs, line, fs.longStart, fs.read); err != nil {
					return total, false, err
				}
			}
			return total, true, nil
		}
		chunk := buf[:n]
		consumed := 0
		for {
			i := bytes.IndexByte(chunk[consumed:], '\n')
			if i < 0 {
				break
			}
			line := chunk[consumed : consumed+i]
			start := fs.read + int64(consumed)
			end := start + int64(i) + 1
			if fs.inLong {
				if room := maxPhys - len(fs.long); room > 0 {
					fs.long = append(fs.long, line[:min(room, len(line))]...)
				}
				line, start = fs.long, fs.longStart
				fs.inLong = false
			}
			consumed += i + 1
			if err := fn(fs, line, start, end); err != nil {
				fs.read += int64(consumed)
				return total + consumed, false, err
			}
			if cap(fs.long) > readBufSize {
				fs.long = nil
			}
		}
		rest := chunk[consumed:]
		atEOF := n < len(buf)
		if len(rest) > 0 && (fs.inLong || consumed == 0 && !atEOF || final && atEOF) {
			// No newline in a full buffer (a long line), or more of a
			// long line, or the unterminated end of a finished file.
			if !fs.inLong {
				fs.inLong, fs.longStart, fs.long = true, fs.read+int64(consumed), fs.long[:0]
			}
			if room := maxPhys - len(fs.long); room > 0 {
				fs.long = append(fs.long, rest[:min(room, len(rest))]...)
			}
			consumed = n
		}
		fs.read += int64(consumed)
		total += consumed
		if atEOF {
			if final && fs.inLong {
				continue // the next ReadAt returns 0 and flushes it
			}
			return total, true, nil
		}
	}
	return total, false, nil
}
