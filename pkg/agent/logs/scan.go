package logs

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// scan finds the groups (new pods, new files), matches each group's files
// by identity, notices rotations, truncations and deletions, and drops
// what is finished.
func (t *Tailer) scan(now time.Time) {
	found := t.discover()
	for key, cfg := range found {
		if _, ok := t.groups[key]; !ok {
			t.groups[key] = t.newGroup(key, cfg, now)
		}
	}
	for key, g := range t.groups {
		_, g.present = found[key]
		if g.optedOut {
			for _, fs := range g.files {
				fs.close()
			}
			g.files = nil
		} else {
			t.scanGroup(g, now)
		}
		if !g.present && len(g.files) == 0 {
			delete(t.groups, key)
			t.dirty = true
		}
	}
	if !t.firstScan {
		// Positions of files that no longer exist are forgotten.
		t.firstScan = true
		t.startPos = nil
		t.dirty = true
	}
	if t.dirty {
		t.savePositions()
	}
	t.observe(false)
}

// observe sets the gauges and the status page. With stat, the sizes of
// open files are read again: while the tailer waits for the gateway it
// does not scan, and the lag must still grow with the files.
func (t *Tailer) observe(stat bool) {
	open := 0
	var lag int64
	for _, g := range t.groups {
		for _, fs := range g.files {
			if fs.f != nil {
				open++
				if fi, err := fs.f.Stat(); stat && err == nil {
					fs.size = fi.Size()
				}
			}
			lag += max(fs.size, fs.read) - fs.acked
		}
	}
	t.m.filesTailed.Set(float64(open))
	t.m.positionsLag.Set(float64(lag))
	t.snapshotStatus()
}

// discover lists the current files: container logs and the configured
// globs (a glob match that is a rotated sibling of another match is read
// as part of that one's group).
func (t *Tailer) discover() map[string]*FileConfig {
	found := map[string]*FileConfig{}
	if !t.cfg.SkipContainerLogs {
		ms, _ := filepath.Glob(filepath.Join(t.cfg.PodsDir, "*", "*", "*.log"))
		for _, m := range ms {
			if len(strings.Split(filepath.Base(filepath.Dir(filepath.Dir(m))), "_")) == 3 {
				found[m] = nil
			}
		}
	}
	for i := range t.cfg.Files {
		fc := &t.cfg.Files[i]
		var ms []string
		for _, p := range fc.Paths {
			m, _ := filepath.Glob(p)
			ms = append(ms, m...)
		}
		for _, m := range ms {
			sibling := false
			for _, o := range ms {
				if filepath.Dir(o) == filepath.Dir(m) && isRotated(filepath.Base(o), filepath.Base(m)) {
					sibling = true
					break
				}
			}
			if fi, err := os.Stat(m); !sibling && err == nil && fi.Mode().IsRegular() {
				found[m] = fc
			}
		}
	}
	return found
}

func (t *Tailer) newGroup(key string, fc *FileConfig, now time.Time) *group {
	g := &group{key: key, dir: filepath.Dir(key), base: filepath.Base(key), static: fc, firstSeen: now}
	if fc != nil {
		g.format = fc.Format
		l := map[string]string{"cluster": t.cluster, "node": t.node}
		for k, v := range fc.Labels {
			l[k] = v
		}
		s := renderLabels(l)
		g.labels = [2]string{s, s}
		g.resolved = true
		return g
	}
	g.format = FormatContainer
	g.container = filepath.Base(g.dir)
	parts := strings.Split(filepath.Base(filepath.Dir(g.dir)), "_")
	g.namespace, g.pod, g.uid = parts[0], parts[1], parts[2]
	t.resolve(g, now)
	return g
}

// resolve labels a container log from the pod informer, or from the path
// when there is no informer or the pod did not show up within podWait.
func (t *Tailer) resolve(g *group, now time.Time) {
	l := map[string]string{"cluster": t.cluster, "node": t.node, "namespace": g.namespace, "pod": g.pod, "container": g.container}
	if t.lookup != nil {
		meta, ok := t.lookup(g.uid)
		if !ok && now.Sub(g.firstSeen) < podWait {
			return
		}
		if ok {
			l["namespace"], l["pod"] = meta.Namespace, meta.Name
			g.optedOut = meta.Annotations[t.cfg.OptOutAnnotation] == "false"
			for _, k := range t.cfg.PodLabels {
				v, ok := meta.Labels[k]
				name := sanitizeLabel(k)
				if _, taken := l[name]; ok && v != "" && !taken {
					l[name] = v
				}
			}
		} else {
			t.log.Warn("pod not known to the informer; labels from the path", "uid", g.uid, "path", g.key)
		}
	}
	for i, s := range []string{"stdout", "stderr"} {
		l["stream"] = s
		g.labels[i] = renderLabels(l)
	}
	g.resolved = true
}

// scanGroup matches the files in the group's directory with the group's
// states by identity.
func (t *Tailer) scanGroup(g *group, now time.Time) {
	cands := g.candidates()
	for _, fs := range g.files {
		fs.unclaimed = true
	}
	var unknown []*candidate
	var truncated []*fileState
	for _, c := range cands {
		fs := g.byID(c.id)
		if fs == nil {
			unknown = append(unknown, c)
			continue
		}
		content := c.readContent(fs.f)
		if !hasPrefix(content, fs.fp) || !fs.done && c.size < fs.read {
			// Same inode, other content: truncated in place
			// (copytruncate), or the inode was freed and reused.
			t.m.truncations.Inc()
			t.log.Info("file truncated or replaced in place", "path", c.path)
			fs.goneAt = now
			if !fs.done {
				truncated = append(truncated, fs)
			}
			unknown = append(unknown, c)
			continue
		}
		fs.unclaimed = false
		if len(content) > len(fs.fp) {
			fs.fp = append(fs.fp[:0:0], content...)
		}
		fs.path, fs.size, fs.mtime = c.path, c.size, c.mtime
		if fs.current && !c.current {
			t.m.rotations.Inc()
			fs.rotatedAt = now
		}
		fs.current = c.current
	}
	for _, fs := range g.files {
		if fs.unclaimed && fs.goneAt.IsZero() {
			fs.goneAt, fs.current = now, false
		}
		if fs.f != nil && !fs.goneAt.IsZero() {
			if fi, err := fs.f.Stat(); err == nil {
				fs.size = fi.Size()
			}
		}
	}

	// Unknown files in the order they were written: rotated ones by
	// modification time, the current one last.
	sort.SliceStable(unknown, func(i, j int) bool {
		a, b := unknown[i], unknown[j]
		if a.current != b.current {
			return b.current
		}
		if !a.mtime.Equal(b.mtime) {
			return a.mtime.Before(b.mtime)
		}
		return a.path < b.path
	})
	// From the positions file: by identity first, then (a copy made
	// while the agent was stopped) by content alone.
	fromPos := map[*candidate]position{}
	for _, c := range unknown {
		if p, ok := t.startPos[c.id]; ok && p.FPLen <= len(c.readContent(nil)) && fpHash(c.content[:p.FPLen]) == p.FPHash {
			fromPos[c] = p
			delete(t.startPos, c.id)
		}
	}
	for _, c := range unknown {
		if _, ok := fromPos[c]; ok || len(c.readContent(nil)) == 0 {
			continue
		}
		for id, p := range t.startPos {
			if p.FPLen > 0 && filepath.Dir(p.Path) == g.dir && p.FPLen <= len(c.content) && fpHash(c.content[:p.FPLen]) == p.FPHash {
				fromPos[c] = p
				delete(t.startPos, id)
				break
			}
		}
	}
	for _, c := range unknown {
		content := c.readContent(nil)
		if fs := adoptable(truncated, content, c.size); fs != nil {
			// copytruncate's copy of a file truncated under us: finish
			// the file from the copy.
			if f, ok := openSame(c); ok {
				fs.close()
				fs.f, fs.id, fs.path, fs.size, fs.mtime = f, c.id, c.path, c.size, c.mtime
				fs.goneAt, fs.current, fs.rotatedAt, fs.unclaimed = time.Time{}, false, now, false
				truncated = without(truncated, fs)
				continue
			}
		}
		if p, ok := fromPos[c]; ok {
			off := p.Offset
			if off > c.size {
				t.m.truncations.Inc()
				off = 0
			}
			t.addState(g, c, content, off, false)
			continue
		}
		if len(content) > 0 && liveCopyOf(g, content) {
			continue // a copy of a file being read (copytruncate, before the truncate)
		}
		// Before the agent's first run (or after a corrupt positions
		// file) rotated files are history: skipped.
		skip := !t.firstScan && t.posState != positionsLoaded && !c.current
		t.addState(g, c, content, 0, skip)
	}
	for _, fs := range truncated {
		// Truncated with no copy in sight: what was not read is gone.
		fs.close()
		fs.done = true
	}
	kept := g.files[:0]
	for _, fs := range g.files {
		if !fs.goneAt.IsZero() && !fs.done && now.Sub(fs.goneAt) > time.Duration(t.cfg.DeletedFileMaxHold) {
			t.m.droppedBytes.WithLabelValues("deleted").Add(float64(max(fs.size-fs.read, 0)))
			t.log.Warn("deleted file held longer than deleted_file_max_hold: closed unfinished", "path", fs.path, "unread_bytes", fs.size-fs.read)
			fs.close()
			fs.done = true
		}
		if !fs.goneAt.IsZero() && fs.done {
			// Deleted (or overwritten) and read: nothing to resume after
			// a restart. A batch in flight may still move it, harmlessly.
			fs.close()
			t.dirty = true
			continue
		}
		kept = append(kept, fs)
	}
	g.files = kept
	g.sortFiles()
}

func (t *Tailer) addState(g *group, c *candidate, content []byte, off int64, skip bool) {
	fs := &fileState{path: c.path, id: c.id, fp: append([]byte(nil), content...), size: c.size, mtime: c.mtime,
		current: c.current, read: off, safe: off, acked: off, seq: t.fileSeq}
	t.fileSeq++
	if skip {
		fs.read, fs.safe, fs.acked, fs.done = c.size, c.size, c.size, true
	} else {
		f, ok := openSame(c)
		if !ok {
			return // gone or replaced since listed: the next scan sees it
		}
		fs.f = f
	}
	if !c.current {
		fs.rotatedAt = time.Now()
	}
	g.files = append(g.files, fs)
	t.dirty = true
}

// openSame opens c's path and checks it is still the file listed.
func openSame(c *candidate) (*os.File, bool) {
	f, err := os.Open(c.path)
	if err != nil {
		return nil, false
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, false
	}
	if id, ok := statID(fi); !ok || id != c.id {
		f.Close()
		return nil, false
	}
	return f, true
}

// adoptable is the truncated file whose content continues in content (its
// copy), with at least what was read of it.
func adoptable(truncated []*fileState, content []byte, size int64) *fileState {
	for _, fs := range truncated {
		if len(fs.fp) > 0 && hasPrefix(content, fs.fp) && size >= fs.read {
			return fs
		}
	}
	return nil
}

// liveCopyOf reports whether content starts like a file of g still read.
func liveCopyOf(g *group, content []byte) bool {
	for _, fs := range g.files {
		if fs.goneAt.IsZero() && len(fs.fp) > 0 && hasPrefix(content, fs.fp) {
			return true
		}
	}
	return false
}

func without(list []*fileState, fs *fileState) []*fileState {
	out := list[:0]
	for _, x := range list {
		if x != fs {
			out = append(out, x)
		}
	}
	return out
}
