package ingester

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// HTTPResult sorts a backend's HTTP answer the way the ecosystem's own
// clients do (Prometheus remote-write, Promtail): 2xx is success; 429 and
// 5xx are retried, honouring Retry-After; any other status is a refusal that
// retrying cannot fix (Permanent). what names the call ("loki push"); msg is
// the start of the response body, for the error.
func HTTPResult(what string, resp *http.Response, msg string) error {
	code := resp.StatusCode
	switch {
	case code/100 == 2:
		return nil
	case code == http.StatusTooManyRequests || code/100 == 5:
		err := fmt.Errorf("%s: %s: %s", what, resp.Status, msg)
		if after, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
			return &RetryAfterError{Err: err, After: after}
		}
		return err
	default:
		return Permanent(fmt.Errorf("%s refused: %s: %s", what, resp.Status, msg))
	}
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
