package loadgen

import (
	"fmt"

	"github.com/prometheus/procfs"
)

// ProcReading is one look at a process: its CPU time so far and its memory.
type ProcReading struct {
	CPUSeconds float64 // utime+stime since the process started
	RSSBytes   float64 // VmRSS now
	HWMBytes   float64 // VmHWM: the peak RSS since the process started
	// RSS split: anonymous memory (the Go heap, stacks, runtime) and
	// file-backed pages (the binary's code and read-only data mapped in).
	AnonBytes, FileBytes float64
}

// ReadProc reads pid's CPU time and memory from /proc, for measurements
// that have no load run of their own (the bench's agent phase watches
// scrapers that pull on their own schedule).
func ReadProc(pid int) (ProcReading, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return ProcReading{}, fmt.Errorf("process %d: %w", pid, err)
	}
	st, err := p.Stat()
	if err != nil {
		return ProcReading{}, fmt.Errorf("process %d: %w", pid, err)
	}
	status, err := p.NewStatus()
	if err != nil {
		return ProcReading{}, fmt.Errorf("process %d: %w", pid, err)
	}
	return ProcReading{
		CPUSeconds: st.CPUTime(), RSSBytes: float64(status.VmRSS), HWMBytes: float64(status.VmHWM),
		AnonBytes: float64(status.RssAnon), FileBytes: float64(status.RssFile),
	}, nil
}
