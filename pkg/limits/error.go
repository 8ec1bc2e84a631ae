package limits

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/tributary-io/tributary/pkg/reject"
)

// Error is a refusal by a per-cluster limit. It wraps a *reject.Error, so
// the gateway maps it to its status like any refusal: 429 when the client
// should retry after RetryAfter (over a rate), 413 or 400 when the request
// could never pass as it is (larger than the burst, over a per-request
// bound).
type Error struct {
	Cluster string
	// Limit is the limit's name in the limits file, e.g.
	// samples_per_second; the reason label of the refusal counter.
	Limit string
	// RetryAfter is, for a rate, the time until the bucket holds what the
	// request needs, in whole seconds and at least one; 0 otherwise.
	RetryAfter time.Duration
	err        error
}

func (e *Error) Error() string { return e.err.Error() }
func (e *Error) Unwrap() error { return e.err }

// AsError returns err's *Error, if it is one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// retrySeconds rounds a wait up to whole seconds (Retry-After's unit),
// at least one: a client told 0 would retry at once into the same refusal.
func retrySeconds(wait time.Duration) time.Duration {
	return time.Duration(max(1, math.Ceil(wait.Seconds()))) * time.Second
}

func rateError(cluster string, s Signal, n float64, perSecond float64, wait time.Duration) *Error {
	retry := retrySeconds(wait)
	what := fmt.Sprintf("%.0f %s", n, s.unit())
	if n == 0 {
		what = "more " + s.unit()
	}
	return &Error{Cluster: cluster, Limit: s.rateName(), RetryAfter: retry, err: &reject.Error{
		Status: http.StatusTooManyRequests,
		Reason: fmt.Sprintf("cluster %q is over its rate limit %s=%g: %s refused, retry after %s", cluster, s.rateName(), perSecond, what, retry),
	}}
}

func burstError(cluster string, s Signal, n float64, burst int) *Error {
	return &Error{Cluster: cluster, Limit: s.burstName(), err: reject.TooLarge(
		"cluster %q: a request of %.0f %s exceeds %s=%d and can never pass: send smaller requests", cluster, n, s.unit(), s.burstName(), burst)}
}

// RequestError is the refusal of a request over one of cluster's
// per-request bounds (limit: its name in the file, e.g.
// max_series_per_request).
func RequestError(cluster, limit string, n, max int) *Error {
	return &Error{Cluster: cluster, Limit: limit, err: reject.TooLarge(
		"cluster %q: %d in one request exceeds %s=%d: send smaller requests", cluster, n, limit, max)}
}
