package loadgen

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ProcStats is what a watched process used during the measured window.
type ProcStats struct {
	// CPUSeconds is user+system CPU time (/proc/PID/stat utime+stime).
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUCores is CPUSeconds over the window's duration.
	CPUCores float64 `json:"cpu_cores"`
	// RSSMaxMB is the largest VmRSS seen, sampled every 100 ms in the window.
	RSSMaxMB float64 `json:"rss_max_mb"`
	// RSSHWMMB is VmHWM at the end: the peak since the process started,
	// which may predate the window.
	RSSHWMMB float64 `json:"rss_hwm_mb"`
	// Error is set if the process could not be read (e.g. it exited).
	Error string `json:"error,omitempty"`
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

const mib = 1 << 20

// procWatcher measures CPU and memory of processes over a window.
type procWatcher struct {
	pids  []int
	start []float64 // CPU seconds at Begin
	began time.Time

	mu     sync.Mutex
	rssMax []float64
	errs   []string
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

// ParsePIDs parses a comma-separated PID list.
func ParsePIDs(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("watch-pids: %q is not a PID", f)
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/stat", pid)); err != nil {
			return nil, fmt.Errorf("watch-pids: process %d: %w", pid, err)
		}
		out = append(out, pid)
	}
	return out, nil
}

func newProcWatcher(pids []int) *procWatcher {
	return &procWatcher{
		pids: pids, start: make([]float64, len(pids)), rssMax: make([]float64, len(pids)), errs: make([]string, len(pids)),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
}

// Begin starts the window: CPU baselines now, RSS sampled from now on.
func (w *procWatcher) Begin() {
	w.once.Do(func() {
		w.began = time.Now()
		for i, pid := range w.pids {
			cpu, err := cpuSeconds(pid)
			if err != nil {
				w.errs[i] = err.Error()
			}
			w.start[i] = cpu
		}
		go w.sample()
	})
}

func (w *procWatcher) sample() {
	defer close(w.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		w.sampleOnce()
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
	}
}

func (w *procWatcher) sampleOnce() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, pid := range w.pids {
		rss, _, err := memory(pid)
		if err != nil {
			if w.errs[i] == "" {
				w.errs[i] = err.Error()
			}
			continue
		}
		w.rssMax[i] = max(w.rssMax[i], rss)
	}
}

// End closes the window and reports per process, keyed by PID.
func (w *procWatcher) End() []ProcStats {
	w.Begin() // a window that never began is empty, not missing
	close(w.stop)
	<-w.done
	w.sampleOnce()
	elapsed := time.Since(w.began).Seconds()
	out := make([]ProcStats, len(w.pids))
	for i, pid := range w.pids {
		st := ProcStats{RSSMaxMB: w.rssMax[i] / mib, Error: w.errs[i]}
		if cpu, err := cpuSeconds(pid); err == nil {
			st.CPUSeconds = cpu - w.start[i]
			if elapsed > 0 {
				st.CPUCores = st.CPUSeconds / elapsed
			}
		} else if st.Error == "" {
			st.Error = err.Error()
		}
		if _, hwm, err := memory(pid); err == nil {
			st.RSSHWMMB = hwm / mib
		}
		out[i] = st
	}
	return out
}

// cpuSeconds is utime+stime of pid.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: the
	// fields after its closing parenthesis start at field 3 (state).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseUint(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return float64(utime+stime) / clockTicks, nil
}

// memory is VmRSS and VmHWM of pid, in bytes.
func memory(pid int) (rss, hwm float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		f := strings.Fields(v) // "12345 kB"
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: unexpected %q", pid, name, v)
		}
		kb, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, name, err)
		}
		if name == "VmRSS" {
			rss = kb * 1024
		} else {
			hwm = kb * 1024
		}
	}
	return rss, hwm, nil
}
