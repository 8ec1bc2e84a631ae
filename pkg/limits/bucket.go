package limits

import (
	"math"
	"time"
)

// bucket is a token bucket: it holds up to burst tokens and gains rate
// tokens a second. A request of n items takes n tokens or is refused whole;
// a request larger than burst could never pass.
type bucket struct {
	tokens float64
	last   time.Time
	rate   float64
	burst  float64
	// refused is the size of the last request refused for want of tokens,
	// until a request passes: the early check (before the body is read)
	// refuses while the bucket could not pay for such a request again.
	refused float64
}

func newBucket(now time.Time, rate float64, burst int) *bucket {
	return &bucket{tokens: float64(burst), last: now, rate: rate, burst: float64(burst)}
}

// refill brings the bucket to now under the current rate and burst (the
// limits file may have changed them since).
func (b *bucket) refill(now time.Time, rate float64, burst int) {
	if d := now.Sub(b.last).Seconds(); d > 0 {
		b.tokens += d * b.rate
		b.last = now
	}
	b.rate, b.burst = rate, float64(burst)
	b.tokens = min(b.tokens, b.burst)
}

// full: the bucket carries no state a fresh bucket would not have.
func (b *bucket) full() bool { return b.tokens >= b.burst }

// take takes n tokens, or returns how long until the bucket holds n.
func (b *bucket) take(n float64) (wait time.Duration) {
	if b.tokens >= n {
		b.tokens -= n
		b.refused = 0
		return 0
	}
	b.refused = n
	return b.waitFor(n)
}

// give returns n tokens of a request that was refused elsewhere.
func (b *bucket) give(n float64) { b.tokens = min(b.tokens+n, b.burst) }

// early is take's answer for a request of unknown size: refused while the
// bucket holds less than one token, or less than the last refused request
// (at most the burst).
func (b *bucket) early() (wait time.Duration) {
	need := min(max(1, b.refused), b.burst)
	if b.tokens >= need {
		return 0
	}
	return b.waitFor(need)
}

func (b *bucket) waitFor(n float64) time.Duration {
	s := (n - b.tokens) / b.rate
	if s > math.MaxInt32 {
		s = math.MaxInt32
	}
	return time.Duration(s * float64(time.Second))
}
