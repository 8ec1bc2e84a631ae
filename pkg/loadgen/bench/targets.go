package bench

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
)

// Families of a scrape target's exposition: each target serves
// series/familySeries families of familySeries series, shaped like a
// cAdvisor or kube-state-metrics page (six labels per series; the
// scrapers add job, instance and cluster).
const familySeries = 50

// targets are loopback scrape targets that serve the same exposition
// shape; every scrape advances each series' value, as real counters do.
type targets struct {
	addrs   []string
	series  int // per target
	scrapes atomic.Int64
	srvs    []*http.Server
	wg      sync.WaitGroup
}

// startTargets starts n targets of series series each (a multiple of
// familySeries) on free loopback ports.
func startTargets(n, series int) (*targets, error) {
	if series <= 0 || series%familySeries != 0 {
		return nil, fmt.Errorf("series per target %d: want a positive multiple of %d", series, familySeries)
	}
	t := &targets{series: series}
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.close()
			return nil, fmt.Errorf("listen for target %d: %w", i, err)
		}
		t.addrs = append(t.addrs, ln.Addr().String())
		pod := i
		var n atomic.Int64
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			_, _ = w.Write(targetPage(pod, series, n.Add(1)))
			t.scrapes.Add(1)
		})}
		t.srvs = append(t.srvs, srv)
		t.wg.Go(func() { _ = srv.Serve(ln) })
	}
	return t, nil
}

func (t *targets) close() {
	for _, s := range t.srvs {
		_ = s.Close()
	}
	t.wg.Wait()
}

// targetPage is target pod's page at its nth scrape.
func targetPage(pod, series int, n int64) []byte {
	b := make([]byte, 0, series*160)
	for f := range series / familySeries {
		name := "bench_container_metric_" + strconv.Itoa(f) + "_total"
		b = append(b, "# HELP "+name+" A counter of the bench's scrape targets.\n# TYPE "+name+" counter\n"...)
		for s := range familySeries {
			b = append(b, name...)
			b = fmt.Appendf(b, `{namespace="ns-%d",pod="pod-%d-%d",container="c-%d",image="registry.example/app:%d",node="node-%d",id="%d"} `,
				pod%7, pod, s/5, s%5, f, pod%3, s)
			b = strconv.AppendInt(b, n*int64(s+1), 10)
			b = append(b, '\n')
		}
	}
	return b
}
