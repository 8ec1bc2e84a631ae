package loadgen

import (
	"encoding/json"
	"io"
	"math"
	"slices"
	"time"
)

// Result is the outcome of a run, printed as one JSON line. Every field is
// always present (zero where it does not apply to the mode), so scripts can
// read any of them without checking the mode.
type Result struct {
	Mode        string  `json:"mode"`
	Target      string  `json:"target"`
	Concurrency int     `json:"concurrency"`
	DurationS   float64 `json:"duration_s"`
	// Requests counts every request started in the measured window.
	Requests int64 `json:"requests"`
	// Samples, Entries, Spans and Records count what the receiver acknowledged
	// (2xx, Kafka ack) or, for kafka-consume, what was read.
	Samples       int64   `json:"samples"`
	SamplesPerSec float64 `json:"samples_per_sec"`
	Entries       int64   `json:"entries"`
	EntriesPerSec float64 `json:"entries_per_sec"`
	Spans         int64   `json:"spans"`
	SpansPerSec   float64 `json:"spans_per_sec"`
	Records       int64   `json:"records"`
	RecordsPerSec float64 `json:"records_per_sec"`
	// BytesPerSec is log line bytes per second for log payloads, and body
	// bytes per second (as sent) for metrics and spans.
	BytesPerSec float64 `json:"bytes_per_sec"`
	// BodyBytesPerSec is request bodies (or record values) as sent.
	BodyBytesPerSec float64 `json:"body_bytes_per_sec"`
	// P50Ms and P99Ms are request latencies of acknowledged requests.
	P50Ms       float64          `json:"p50_ms"`
	P99Ms       float64          `json:"p99_ms"`
	StatusCodes map[string]int64 `json:"status_codes"`
	// Errors counts requests that were not acknowledged: non-2xx answers,
	// Kafka failures and requests without an answer.
	Errors int64 `json:"errors"`
	// Complete is false if the run was interrupted, or kafka-consume did
	// not reach the topic's end in time.
	Complete bool `json:"complete"`
	// PIDs are the -watch-pids processes, by PID; Self is this process.
	PIDs map[string]ProcStats `json:"pids"`
	Self ProcStats            `json:"self"`
}

// WriteJSON writes r as one line.
func (r *Result) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// quantile is the nearest-rank q-quantile of sorted durations, in ms.
func quantile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = min(max(i, 0), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}

func sortedDurations(parts [][]time.Duration) []time.Duration {
	var all []time.Duration
	for _, p := range parts {
		all = append(all, p...)
	}
	slices.Sort(all)
	return all
}
