package lokipush

import (
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/tributary-io/tributary/pkg/reject"
)

// validator applies Loki's per-stream and per-entry rules to one request
// and counts what it refused, so that the rest can be written as Loki
// writes it (pkg/distributor: a stream with invalid labels and an invalid
// entry are skipped, the request answered 400 once the rest is stored).
type validator struct {
	lim Limits
	opt Options // a copy: a pointer would move the caller's Options to the heap
	// Accepted entry timestamps (ns) lie in [oldest, newest].
	oldest, newest int64
	behind         uint64 // MaxEntryBehind in ns; 0: not checked

	refusedStreams, refusedEntries int
	first                          error // the first refusal, naming its stream
}

func newValidator(lim Limits, opt Options) validator {
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	v := validator{lim: lim, opt: opt, oldest: math.MinInt64, newest: math.MaxInt64}
	if lim.RejectOldSamplesMaxAge > 0 {
		v.oldest = now.Add(-lim.RejectOldSamplesMaxAge).UnixNano()
	}
	if lim.CreationGracePeriod > 0 {
		v.newest = now.Add(lim.CreationGracePeriod).UnixNano()
	}
	if lim.MaxEntryBehind > 0 {
		v.behind = uint64(lim.MaxEntryBehind)
	}
	return v
}

// entryScan is what the rules need of one entry.
type entryScan struct {
	ts                   int64 // ns since the epoch, saturated
	hasTimestamp         bool
	line                 int // bytes
	metaCount, metaBytes int // structured metadata, as Loki counts them
}

// noEntryYet is a stream's newest timestamp before any entry was accepted.
const noEntryYet = math.MinInt64

// checkEntry applies Loki's ValidateEntry rules and the ingester's "too far
// behind" to e, an entry of a stream whose newest accepted entry so far is
// at *newest (noEntryYet: none), and advances *newest if e is accepted.
func (v *validator) checkEntry(e entryScan, newest *int64) error {
	if !e.hasTimestamp {
		return fmt.Errorf("entry has no timestamp")
	}
	if err := checkEntry(e.line, e.metaCount, e.metaBytes, v.lim); err != nil {
		return err
	}
	switch {
	case e.ts < v.oldest:
		return fmt.Errorf("timestamp too old: %s, oldest acceptable timestamp is: %s (reject_old_samples_max_age %s)",
			fmtNano(e.ts), fmtNano(v.oldest), v.lim.RejectOldSamplesMaxAge)
	case e.ts > v.newest:
		return fmt.Errorf("timestamp too new: %s, newest acceptable timestamp is: %s (creation_grace_period %s)",
			fmtNano(e.ts), fmtNano(v.newest), v.lim.CreationGracePeriod)
	case v.behind > 0 && *newest != noEntryYet && *newest > e.ts && uint64(*newest)-uint64(e.ts) > v.behind:
		// The difference as unsigned: it may not fit an int64.
		return fmt.Errorf("entry too far behind: timestamp %s, oldest acceptable timestamp is: %s (the stream's newest entry in this request minus max_chunk_age/2 = %s)",
			fmtNano(e.ts), fmtNano(*newest-int64(v.behind)), v.lim.MaxEntryBehind)
	}
	*newest = max(*newest, e.ts)
	return nil
}

// checkEntry applies Loki's ValidateEntry size rules.
func checkEntry(line, metaCount, metaBytes int, lim Limits) error {
	if lim.MaxLineBytes > 0 && line > lim.MaxLineBytes {
		return fmt.Errorf("line too long: %d bytes, max_line_size is %d", line, lim.MaxLineBytes)
	}
	if lim.MaxStructuredMetadataBytes > 0 && metaBytes > lim.MaxStructuredMetadataBytes {
		return fmt.Errorf("structured metadata too large: %d bytes, limit %d", metaBytes, lim.MaxStructuredMetadataBytes)
	}
	if lim.MaxStructuredMetadataEntries > 0 && metaCount > lim.MaxStructuredMetadataEntries {
		return fmt.Errorf("too many structured metadata labels: %d, limit %d", metaCount, lim.MaxStructuredMetadataEntries)
	}
	return nil
}

func fmtNano(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// unixNano converts a validated google.protobuf.Timestamp to nanoseconds,
// saturating outside the ~584 years an int64 holds (far outside any age
// window, so the saturated value is refused or accepted alike).
func unixNano(s int64, ns int32) int64 {
	const limit = math.MaxInt64/1_000_000_000 - 1
	switch {
	case s > limit:
		return math.MaxInt64
	case s < -limit:
		return math.MinInt64 + 1 // not noEntryYet
	}
	return s*1_000_000_000 + int64(ns)
}

// refuseStream records a stream refused whole, with its entries.
func (v *validator) refuseStream(entries int, err error) {
	v.refusedStreams++
	v.refusedEntries += entries
	if v.first == nil {
		v.first = err
	}
}

// refuseEntries records n refused entries of an accepted stream; err is the
// first of them.
func (v *validator) refuseEntries(n int, err error) {
	v.refusedEntries += n
	if v.first == nil {
		v.first = err
	}
}

// err is the answer for what was refused (nil: nothing): a 400 counting
// the refused entries out of total and quoting the first refusal.
func (v *validator) err(total int) error {
	if v.first == nil {
		return nil
	}
	streams := ""
	if v.refusedStreams > 0 {
		streams = fmt.Sprintf(" (%d streams refused whole)", v.refusedStreams)
	}
	rest := "the rest was accepted"
	if v.refusedEntries >= total {
		rest = "nothing was accepted"
	}
	return &reject.Error{Status: http.StatusBadRequest, Reason: fmt.Sprintf(
		"%d of %d entries refused%s, %s; first refusal: %v", v.refusedEntries, total, streams, rest, v.first)}
}
