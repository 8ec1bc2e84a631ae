package remotewrite

import (
	"strconv"
	"strings"
)

// reason is why a series or sample was left out of a request's records.
type reason uint8

const (
	_               reason = iota
	reasonTooOld           // timestamp older than Limits.MaxSampleAge
	reasonTooNew           // timestamp more than Limits.MaxFuture ahead
	reasonLabels           // invalid, duplicate or missing labels
	reasonLimit            // over a label count or length limit
	reasonNoCluster        // no cluster label and no default
	reasonInvalid          // remote-write 2.0: bad references, no samples
	reasonHistogram        // a native histogram Prometheus would not store
	numReasons
)

// Reasons are the values of Refusal.ByReason's keys, as metric labels.
var reasonNames = [numReasons]string{
	reasonTooOld:    "too_old",
	reasonTooNew:    "too_new",
	reasonLabels:    "invalid_labels",
	reasonLimit:     "label_limit",
	reasonNoCluster: "no_cluster",
	reasonInvalid:   "invalid_series",
	reasonHistogram: "invalid_histogram",
}

var reasonText = [numReasons]string{
	reasonTooOld:    "too old",
	reasonTooNew:    "too far in the future",
	reasonLabels:    "in series with invalid labels",
	reasonLimit:     "in series over a label limit",
	reasonNoCluster: "in series without a cluster",
	reasonInvalid:   "in invalid series",
	reasonHistogram: "invalid histograms",
}

// Refusal is what a request lost to validation while the rest of it was
// accepted, as Prometheus's remote-write 2.0 receiver and Mimir do: series
// with invalid labels are left out whole, samples outside the time window
// one by one.
type Refusal struct {
	Series     int // series left out whole
	Samples    int // float samples left out (in those series or outside the window)
	Histograms int
	Exemplars  int
	byReason   [numReasons]int // items (samples + histograms + exemplars)
	first      string
}

func (r *Refusal) count(samples, histograms, exemplars int) {
	r.Samples += samples
	r.Histograms += histograms
	r.Exemplars += exemplars
}

// Items is the number of samples, histogram samples and exemplars refused.
func (r *Refusal) Items() int { return r.Samples + r.Histograms + r.Exemplars }

// ByReason calls f for every reason with refused items, with the reason as
// a metric label value.
func (r *Refusal) ByReason(f func(reason string, items int)) {
	for i, n := range r.byReason {
		if n > 0 {
			f(reasonNames[i], n)
		}
	}
}

// Error is the one-line answer for the client: counts by kind and reason,
// then the first refusal in full.
func (r *Refusal) Error() string {
	var sb strings.Builder
	sb.WriteString("refused ")
	sep := ""
	part := func(n int, one, many string) {
		if n == 0 {
			return
		}
		sb.WriteString(sep)
		sb.WriteString(strconv.Itoa(n))
		sb.WriteByte(' ')
		if n == 1 {
			sb.WriteString(one)
		} else {
			sb.WriteString(many)
		}
		sep = ", "
	}
	part(r.Samples, "sample", "samples")
	part(r.Histograms, "histogram sample", "histogram samples")
	part(r.Exemplars, "exemplar", "exemplars")
	part(r.Series, "series", "series")
	if r.Items() > 0 {
		sb.WriteString(" (")
		sep = ""
		for i, n := range r.byReason {
			if n > 0 {
				sb.WriteString(sep)
				sb.WriteString(strconv.Itoa(n))
				sb.WriteByte(' ')
				sb.WriteString(reasonText[i])
				sep = ", "
			}
		}
		sb.WriteByte(')')
	}
	sb.WriteString("; first: ")
	sb.WriteString(r.first)
	return sb.String()
}
