package bench

import (
	"context"
	"sync"
	"time"

	"github.com/tributary-io/tributary/pkg/loadgen"
)

// usage is what a process used over a measured window.
type usage struct {
	cpuSeconds float64
	// rssSteadyMB is the median of the RSS samples in the window: what the
	// process holds between scrapes once its series exist.
	rssSteadyMB float64
	// rssPeakMB is the peak RSS since the process started (VmHWM), warm-up
	// included: the first scrapes, which create every series, are what a
	// memory limit must allow for.
	rssPeakMB float64
	// anonMB and fileMB split rssSteadyMB (medians of their own): the
	// heap, stacks and runtime, and the binary's pages mapped in.
	anonMB, fileMB float64
	err            error
}

// sampler reads processes' CPU time at the start and end of a window and
// their RSS every 250 ms in between.
type sampler struct {
	pids  []int
	start []loadgen.ProcReading
	rss   [][]loadgen.ProcReading
	errs  []error
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

func startSampler(pids ...int) *sampler {
	s := &sampler{pids: pids, start: make([]loadgen.ProcReading, len(pids)), rss: make([][]loadgen.ProcReading, len(pids)), errs: make([]error, len(pids))}
	for i, pid := range pids {
		s.start[i], s.errs[i] = loadgen.ReadProc(pid)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.wg.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			for i, pid := range s.pids {
				if r, err := loadgen.ReadProc(pid); err == nil {
					s.rss[i] = append(s.rss[i], r)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return s
}

// end closes the window and reports per process, in the order given.
func (s *sampler) end() []usage {
	s.stop()
	s.wg.Wait()
	out := make([]usage, len(s.pids))
	for i, pid := range s.pids {
		u := usage{err: s.errs[i]}
		r, err := loadgen.ReadProc(pid)
		if err != nil && u.err == nil {
			u.err = err
		}
		if u.err == nil {
			u.cpuSeconds = r.CPUSeconds - s.start[i].CPUSeconds
			u.rssPeakMB = r.HWMBytes / mib
			var rss, anon, file []float64
			for _, r := range s.rss[i] {
				rss, anon, file = append(rss, r.RSSBytes), append(anon, r.AnonBytes), append(file, r.FileBytes)
			}
			if m, ok := median(rss); ok {
				u.rssSteadyMB = m / mib
				a, _ := median(anon)
				f, _ := median(file)
				u.anonMB, u.fileMB = a/mib, f/mib
			}
		}
		out[i] = u
	}
	return out
}

const mib = 1 << 20
