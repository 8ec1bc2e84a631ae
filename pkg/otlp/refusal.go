package otlp

import (
	"encoding/hex"
	"fmt"
	"strconv"
)

// Reason is why spans were refused.
type Reason uint8

const (
	_               Reason = iota
	ReasonID               // trace, span, parent or link ID of the wrong length or all zero
	ReasonTime             // end before start
	ReasonUTF8             // a string that is not valid UTF-8
	ReasonLimit            // over an attribute, event, link or length limit
	ReasonNoCluster        // no k8s.cluster.name and no default cluster
	ReasonCluster          // a k8s.cluster.name that is not a usable cluster name
	ReasonTooLarge         // a span that does not fit one record
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonID:        "invalid_id",
	ReasonTime:      "invalid_time",
	ReasonUTF8:      "invalid_utf8",
	ReasonLimit:     "limit",
	ReasonNoCluster: "no_cluster",
	ReasonCluster:   "invalid_cluster",
	ReasonTooLarge:  "too_large",
}

// String is the reason as a metric label value.
func (r Reason) String() string { return reasonNames[r] }

// problem is why a span, or every span of a resource or scope, is refused.
type problem struct {
	reason Reason
	msg    string
}

func newProblem(r Reason, format string, args ...any) *problem {
	return &problem{reason: r, msg: fmt.Sprintf(format, args...)}
}

// Refusal is what the last Parse refused while keeping the rest.
type Refusal struct {
	Spans    int
	byReason [numReasons]int
	first    string
}

func (r *Refusal) add(p *problem, where string, n int) {
	if n <= 0 {
		return
	}
	if r.Spans == 0 {
		r.first = where + ": " + p.msg
	}
	r.Spans += n
	r.byReason[p.reason] += n
}

// Message is OTLP's partial_success.error_message: how many spans were
// refused and why the first was.
func (r *Refusal) Message() string {
	if r.Spans == 1 {
		return "1 span refused: " + r.first
	}
	return strconv.Itoa(r.Spans) + " spans refused; first: " + r.first
}

// ByReason calls f for each reason with refused spans.
func (r *Refusal) ByReason(f func(reason string, spans int)) {
	for i, n := range r.byReason {
		if n > 0 {
			f(Reason(i).String(), n)
		}
	}
}

// spanWhere names a span in a refusal message: its position and IDs.
func spanWhere(index int, traceID, spanID []byte) string {
	return fmt.Sprintf("span %d (trace %s, span %s)", index, shortHex(traceID), shortHex(spanID))
}

func shortHex(b []byte) string {
	if len(b) > 16 {
		return hex.EncodeToString(b[:16]) + "…"
	}
	if len(b) == 0 {
		return "none"
	}
	return hex.EncodeToString(b)
}
