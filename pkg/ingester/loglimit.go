package ingester

import (
	"log/slog"
	"sync"
	"time"
)

// logLimiter lets through one warning per cause per interval and counts
// the ones it held back, so that an outage of a sink or of Kafka, retried
// by every partition every few hundred milliseconds, writes a line per
// cause every interval instead of flooding the log. The next line of a
// cause carries "suppressed", the number held back since the last one.
//
// Causes are the fixed messages of the call sites ("sink write failed,
// retrying", ...), so the map stays small.
type logLimiter struct {
	log   *slog.Logger
	every time.Duration

	mu     sync.Mutex
	causes map[string]*limitedCause
}

type limitedCause struct {
	last       time.Time
	suppressed int
}

// logEvery is the interval of a cause's warnings: an operator watching a
// log during an outage sees it continue, and a minute-long outage costs
// six lines per cause.
const logEvery = 10 * time.Second

func newLogLimiter(log *slog.Logger, every time.Duration) *logLimiter {
	return &logLimiter{log: log, every: every, causes: map[string]*limitedCause{}}
}

// Warn logs msg with args unless msg was logged less than the interval ago.
func (l *logLimiter) Warn(msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	c := l.causes[msg]
	if c == nil {
		c = &limitedCause{}
		l.causes[msg] = c
	}
	if !c.last.IsZero() && now.Sub(c.last) < l.every {
		c.suppressed++
		l.mu.Unlock()
		return
	}
	n := c.suppressed
	c.last, c.suppressed = now, 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.log.Warn(msg, args...)
}
