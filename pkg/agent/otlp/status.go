package otlp

import (
	"fmt"
	"io"
	"time"
)

// Status writes the relay's section of the agent's /status page.
func (r *Relay) Status(w io.Writer) {
	fmt.Fprintln(w, "OTLP RELAY")
	listen := func(addr string) string {
		if addr == "" {
			return Off
		}
		return addr
	}
	fmt.Fprintf(w, "  receivers:  grpc %s, http %s\n", listen(r.GRPCAddr()), listen(r.HTTPAddr()))
	switch {
	case r.pods == nil:
		fmt.Fprintln(w, "  k8s attrs:  off (no kubernetes.node_name): only k8s.cluster.name is set")
	case r.podsSynced.Load():
		fmt.Fprintln(w, "  k8s attrs:  on, pods of this node listed")
	default:
		fmt.Fprintln(w, "  k8s attrs:  waiting for the pod list (senders are asked to retry)")
	}
	fmt.Fprintf(w, "  ready:      %v\n", r.Ready())
	used := r.budget.load()
	fmt.Fprintf(w, "  queue:      %d of %d bytes (%.0f%%)\n", used, r.cfg.MaxQueueBytes, 100*float64(used)/float64(r.cfg.MaxQueueBytes))
	for _, p := range r.pipes {
		items, bytes := p.batcher.pending()
		p.mu.Lock()
		lastOK, lastErr, lastErrAt := p.lastOK, p.lastErr, p.lastErrAt
		p.mu.Unlock()
		ok := "never"
		if !lastOK.IsZero() {
			ok = time.Since(lastOK).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(w, "  %-10s  to %s: %d items (%d bytes) waiting for a batch; last success %s\n", p.sig.name+":", p.url, items, bytes, ok)
		if lastErr != "" {
			fmt.Fprintf(w, "              last error %s ago: %s\n", time.Since(lastErrAt).Round(time.Second), lastErr)
		}
	}
}
