package metrics

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
)

// Status writes the plain-text status page: leadership, every active
// target (job, namespace/pod/container, what produced it, health, last
// scrape, samples per scrape, last error), the WAL and the send queue.
func (p *Pipeline) Status(w io.Writer) {
	p.mu.Lock()
	leader, cluster, wide := p.isLeader, p.cfg.Cluster, p.cfg.ClusterWideJobs
	p.mu.Unlock()
	fmt.Fprintf(w, "cluster:  %s\n", cluster)
	fmt.Fprintf(w, "ready:    %v\n", p.Ready())
	if leader {
		fmt.Fprintf(w, "leader:   yes (scrapes the cluster-wide jobs %v)\n", wide)
	} else {
		fmt.Fprintf(w, "leader:   no (cluster-wide jobs %v run on the leader)\n", wide)
	}

	fmt.Fprintln(w, "\nTARGETS")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tTARGET\tPOD\tCONTAINER\tSOURCE\tHEALTH\tLAST SCRAPE\tSAMPLES\tLAST ERROR")
	active := p.scrape.TargetsActive()
	jobs := make([]string, 0, len(active))
	for j := range active {
		jobs = append(jobs, j)
	}
	slices.Sort(jobs)
	seen := map[*scrape.Target]bool{}
	var lb labels.Builder
	for _, job := range jobs {
		for _, t := range active[job] {
			seen[t] = true
			ls := t.Labels(&lb)
			pod := ls.Get("pod")
			if ns := ls.Get("namespace"); ns != "" && pod != "" {
				pod = ns + "/" + pod
			}
			last, samples, errText := "never", "-", ""
			if ts := t.LastScrape(); !ts.IsZero() {
				last = fmt.Sprintf("%s ago (%s)", time.Since(ts).Round(time.Second), t.LastScrapeDuration().Round(time.Millisecond))
			}
			if n, ok := p.app.samplesLastScrape(t); ok {
				samples = fmt.Sprint(n)
			}
			if err := t.LastError(); err != nil {
				errText = oneLine(err.Error())
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", job, t.URL(), dash(pod), dash(ls.Get("container")),
				source(t, job), t.Health(), last, samples, errText)
		}
	}
	tw.Flush()
	p.app.forget(seen)

	fmt.Fprintln(w, "\nWAL")
	fmt.Fprintf(w, "dir:             %s\n", p.walDir)
	fmt.Fprintf(w, "size:            %d bytes\n", dirSize(filepath.Join(p.walDir, "wal")))
	if failing, since, err := p.app.walHealth(); failing {
		fmt.Fprintf(w, "appends:         FAILING since %s (%s ago): scrapes are lost until the WAL can be written again; last error: %s\n",
			since.UTC().Format(time.RFC3339), time.Since(since).Round(time.Second), oneLine(err))
	} else {
		fmt.Fprintln(w, "appends:         ok")
	}
	if p.resume != nil {
		mark := p.resume.Mark()
		if mark > 0 {
			fmt.Fprintf(w, "acknowledged to: %s (resume mark; a restart resends what is after it)\n", time.UnixMilli(mark).UTC().Format(time.RFC3339))
		} else {
			fmt.Fprintln(w, "acknowledged to: nothing yet")
		}
		if !p.resume.backlogDone.Load() {
			fmt.Fprintf(w, "resending:       %d samples of the previous run not yet acknowledged\n", p.resume.pending.Load())
		}
	}

	fmt.Fprintln(w, "\nSEND QUEUE (to the gateway)")
	q := p.queueMetrics()
	fmt.Fprintf(w, "shards:          %.0f\n", q["prometheus_remote_storage_shards"])
	fmt.Fprintf(w, "pending samples: %.0f\n", q["prometheus_remote_storage_samples_pending"])
	fmt.Fprintf(w, "sent samples:    %.0f (failed %.0f, retried %.0f, dropped %.0f)\n",
		q["prometheus_remote_storage_samples_total"], q["prometheus_remote_storage_samples_failed_total"],
		q["prometheus_remote_storage_samples_retried_total"], q["prometheus_remote_storage_samples_dropped_total"])
	newest, sent := q["prometheus_remote_storage_highest_timestamp_in_seconds"], q["prometheus_remote_storage_queue_highest_sent_timestamp_seconds"]
	if sent > 0 {
		fmt.Fprintf(w, "sent up to:      %s (oldest unsent sample is after it)\n", time.Unix(int64(sent), 0).UTC().Format(time.RFC3339))
	}
	if newest > 0 && sent > 0 {
		fmt.Fprintf(w, "behind by:       %s\n", time.Duration((newest-sent)*float64(time.Second)).Round(time.Second))
	}
	switch {
	case q["prometheus_remote_storage_samples_total"] == 0 && q["prometheus_remote_storage_samples_retried_total"] == 0:
		fmt.Fprintln(w, "last answer:     nothing sent yet")
	case q["prometheus_remote_storage_samples_pending"] > 0 && q["prometheus_remote_storage_samples_retried_total"] > 0:
		fmt.Fprintln(w, "last answer:     failing (retrying; see the agent's log for the gateway's answer)")
	default:
		fmt.Fprintln(w, "last answer:     ok")
	}
}

// source says what produced a target: a pod annotation, or the scrape
// config's discovery.
func source(t *scrape.Target, job string) string {
	var lb labels.Builder
	d := t.DiscoveredLabels(&lb)
	if d.Get("__meta_kubernetes_pod_annotation_prometheus_io_scrape") == "true" ||
		d.Get("__meta_kubernetes_pod_annotationpresent_prometheus_io_scrape") == "true" {
		return "annotation prometheus.io/scrape on pod " + d.Get("__meta_kubernetes_namespace") + "/" + d.Get("__meta_kubernetes_pod_name")
	}
	kind := "static_configs"
	d.Range(func(l labels.Label) {
		switch {
		case strings.HasPrefix(l.Name, "__meta_kubernetes_"):
			kind = "kubernetes_sd_configs"
		case l.Name == "__meta_filepath":
			kind = "file_sd_configs " + l.Value
		}
	})
	return "job " + job + " (" + kind + ")"
}

func (p *Pipeline) queueMetrics() map[string]float64 {
	out := map[string]float64{}
	if p.gather == nil {
		return out
	}
	mfs, err := p.gather.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "prometheus_remote_storage_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[name] += value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}
