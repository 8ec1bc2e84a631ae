package logs

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// group is one log as its writer sees it: a path (the current file) and
// the files rotated away from it, read in order, oldest first.
type group struct {
	key    string // the current file's path
	dir    string
	base   string
	format Format
	static *FileConfig // nil: a container log

	// Container logs: from the directory names, until the pod informer
	// says better.
	namespace, pod, uid, container string

	firstSeen time.Time
	resolved  bool // labels final (pod found, or waited long enough)
	optedOut  bool
	labels    [2]string // rendered stream labels: stdout (or the only one), stderr
	files     []*fileState
	present   bool // the current path exists (last scan)
}

// compressed suffixes of rotated files: skipped (the kubelet compresses
// only rotated files older than the newest one, which the tailer reads
// first).
var compressed = []string{".gz", ".bz2", ".xz", ".zst", ".zip"}

// isRotated reports whether name is a rotated sibling of base: the
// kubelet's 0.log.20240102-150405, logrotate's x.log.1 or x.log-20240102,
// the kube-apiserver's audit-2024-01-02T15-04-05.000.log for audit.log.
func isRotated(base, name string) bool {
	if name == base {
		return false
	}
	for _, c := range compressed {
		if strings.HasSuffix(name, c) {
			return false
		}
	}
	if strings.HasPrefix(name, base+".") || strings.HasPrefix(name, base+"-") {
		return true
	}
	ext := filepath.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	return ext != "" && stem != "" && strings.HasPrefix(name, stem+"-") && strings.HasSuffix(name, ext)
}

// candidate is a file of a group's directory as a scan saw it.
type candidate struct {
	path    string
	id      fileID
	size    int64
	mtime   time.Time
	current bool
	content []byte // first bytes, read on demand
}

// candidates lists the group's current file and its rotated siblings.
func (g *group) candidates() []*candidate {
	ents, err := os.ReadDir(g.dir)
	if err != nil {
		return nil
	}
	var out []*candidate
	for _, e := range ents {
		name := e.Name()
		if name != g.base && !isRotated(g.base, name) {
			continue
		}
		p := filepath.Join(g.dir, name)
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		id, ok := statID(fi)
		if !ok {
			continue
		}
		out = append(out, &candidate{path: p, id: id, size: fi.Size(), mtime: fi.ModTime(), current: name == g.base})
	}
	return out
}

// readContent fills c.content from f (an open descriptor of the same
// inode) or from the path.
func (c *candidate) readContent(f *os.File) []byte {
	if c.content != nil {
		return c.content
	}
	if f == nil {
		var err error
		if f, err = os.Open(c.path); err != nil {
			c.content = []byte{}
			return c.content
		}
		defer f.Close()
	}
	fp, err := readFingerprint(f)
	if err != nil {
		fp = []byte{}
	}
	c.content = fp
	return fp
}

// byID is the group's state of a file with identity id, if any.
func (g *group) byID(id fileID) *fileState {
	for _, fs := range g.files {
		if fs.id == id && fs.goneAt.IsZero() {
			return fs
		}
	}
	return nil
}

// sortFiles puts the files in reading order.
func (g *group) sortFiles() {
	sort.SliceStable(g.files, func(i, j int) bool { return g.files[i].seq < g.files[j].seq })
}

// next is the first file not yet finished: the only one read.
func (g *group) next() *fileState {
	for _, fs := range g.files {
		if !fs.done {
			return fs
		}
	}
	return nil
}

// currentState is the state of the file at the group's path, if known.
func (g *group) currentState() *fileState {
	for _, fs := range g.files {
		if fs.current && fs.goneAt.IsZero() {
			return fs
		}
	}
	return nil
}
