package ingester

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// ErrMisconfigured marks a sink's answer that says the sink is set up
// wrongly rather than the data being bad: the URL has no such endpoint
// (404, 405) or the credentials are refused (401, 403, 407). Errors
// wrapping it are retryable: the backlog waits for the operator instead of
// being dead-lettered record by record.
var ErrMisconfigured = errors.New("sink misconfigured")

// HTTPResult sorts a backend's HTTP answer the way the ecosystem's own
// clients do (Prometheus remote-write, Promtail): 2xx is success; 429 and
// 5xx are retried, honouring Retry-After; 401, 403, 404, 405 and 407 are
// retried too, wrapping ErrMisconfigured (a path missing from the URL or
// expired credentials fail every write alike); any other status is a
// refusal that retrying cannot fix (Permanent). what names the call ("loki
// push"); msg is the start of the response body, for the error.
func HTTPResult(what string, resp *http.Response, msg string) error {
	code := resp.StatusCode
	switch {
	case code/100 == 2:
		return nil
	case MisconfiguredStatus(code):
		target := ""
		if r := resp.Request; r != nil && r.URL != nil {
			target = " for " + r.Method + " " + cmp.Or(r.URL.Path, "/")
		}
		return fmt.Errorf("%s: %w: answered %s%s: %s", what, ErrMisconfigured, resp.Status, target, msg)
	case code == http.StatusTooManyRequests || code/100 == 5:
		err := fmt.Errorf("%s: %s: %s", what, resp.Status, msg)
		if code == http.StatusTooManyRequests {
			err = fmt.Errorf("%w: %w", ErrThrottled, err)
		}
		if after, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
			return &RetryAfterError{Err: err, After: after}
		}
		return err
	default:
		return Permanent(fmt.Errorf("%s refused: %s: %s", what, resp.Status, msg))
	}
}

// MisconfiguredStatus reports whether an HTTP status says that no request
// to this endpoint with these credentials can succeed, whatever its body.
func MisconfiguredStatus(code int) bool {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
		http.StatusMethodNotAllowed, http.StatusProxyAuthRequired:
		return true
	}
	return false
}

// retryAfter parses Retry-After: delay seconds or an HTTP date.
func retryAfter(v string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}
