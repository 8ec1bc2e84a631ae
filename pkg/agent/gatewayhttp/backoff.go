package gatewayhttp

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Defaults for a zero Backoff: the first retry comes quickly (a blip), and
// a gateway that stays away is asked every ~30 s at most, the remote-write
// queue's max_backoff (metrics.DefaultQueue), so both halves of the agent
// come back together.
const (
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
)

// Backoff is capped exponential backoff with jitter that honours a
// server's Retry-After. The zero value uses DefaultMinBackoff and
// DefaultMaxBackoff. Not safe for concurrent use: one per sender.
type Backoff struct {
	Min, Max time.Duration

	next time.Duration // the un-jittered step of the next Next; 0 = Min
}

// Next returns how long to wait before the next attempt after resp (nil on
// a network error): Retry-After when the server sent one (seconds or an
// HTTP date, capped at Max), else the next exponential step: a random
// duration in [step/2, step], the step doubling from Min up to Max. The
// jitter keeps the agents of a cluster from retrying in lock-step after a
// gateway restart. Reset after a success.
func (b *Backoff) Next(resp *http.Response) time.Duration {
	lo, hi := b.bounds()
	step := max(b.next, lo)
	b.next = min(2*step, hi)
	if resp != nil {
		if d, ok := RetryAfter(resp.Header.Get("Retry-After")); ok {
			return min(d, hi)
		}
	}
	half := step / 2
	return half + rand.N(step-half+1)
}

// Reset starts the steps from Min again.
func (b *Backoff) Reset() { b.next = 0 }

func (b *Backoff) bounds() (lo, hi time.Duration) {
	lo, hi = b.Min, b.Max
	if lo <= 0 {
		lo = DefaultMinBackoff
	}
	if hi <= 0 {
		hi = DefaultMaxBackoff
	}
	return lo, max(hi, lo)
}

// RetryAfter parses a Retry-After header: delay seconds or an HTTP date (a
// date in the past is 0). ok is false when the header is absent or
// unreadable.
func RetryAfter(v string) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		// Beyond ~290 years Duration overflows; any cap applies anyway.
		return time.Duration(min(secs, int64(time.Duration(1<<62)/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}
