package logs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"time"

	"github.com/tributary-io/tributary/internal/atomicfile"
)

// position is how far the gateway has acknowledged one file.
type position struct {
	// Path is where the file was last seen (informative: the file is
	// found again by identity, not by path).
	Path   string `json:"path"`
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	FPLen  int    `json:"fp_len"`
	FPHash uint64 `json:"fp_hash"`
	// Offset is the byte after the last line the gateway acknowledged.
	Offset int64 `json:"offset"`
}

type positionsDoc struct {
	Version int        `json:"version"`
	Files   []position `json:"files"`
}

const positionsVersion = 1

// loadState is what loadPositions found.
type loadState int

const (
	positionsMissing loadState = iota // first start
	positionsLoaded
	positionsCorrupt // renamed aside; see the error
)

// loadPositions reads the positions file. A file that does not decode is
// renamed to <path>.corrupt-<unix time> (kept for a post-mortem) and
// reported with positionsCorrupt: the caller starts over rather than
// crash-looping on it.
func loadPositions(path string) ([]position, loadState, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, positionsMissing, nil
	}
	if err != nil {
		return nil, positionsMissing, fmt.Errorf("read positions file: %w", err)
	}
	var doc positionsDoc
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(&doc)
	if err == nil && doc.Version != positionsVersion {
		err = fmt.Errorf("version %d, want %d", doc.Version, positionsVersion)
	}
	if err == nil {
		for _, p := range doc.Files {
			if p.Offset < 0 || p.FPLen < 0 || p.FPLen > fingerprintBytes {
				err = fmt.Errorf("entry for %s out of range", p.Path)
				break
			}
		}
	}
	if err != nil {
		aside := fmt.Sprintf("%s.corrupt-%d", path, time.Now().Unix())
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, positionsCorrupt, fmt.Errorf("positions file %s is corrupt (%v) and could not be renamed aside: %w", path, err, rerr)
		}
		return nil, positionsCorrupt, fmt.Errorf("positions file %s is corrupt (%v); renamed to %s", path, err, aside)
	}
	return doc.Files, positionsLoaded, nil
}

// savePositions writes the positions atomically: a temporary file in the
// same directory, fsync, rename over the old one, fsync of the directory.
// A crash leaves either the old or the new file, never a torn one.
func savePositions(path string, ps []position) error {
	sort.Slice(ps, func(i, j int) bool { return ps[i].Path < ps[j].Path })
	data, err := json.Marshal(positionsDoc{Version: positionsVersion, Files: ps})
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("write positions: %w", err)
	}
	return nil
}
