package server

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// maxLogClasses bounds the classes a RateLimitedLogger remembers; callers
// derive classes from a few fixed values (signal, status code), so this is
// only a guard.
const maxLogClasses = 1000

// RateLimitedLogger logs at most one line per class per interval, so that
// a client sending bad requests by the thousand, or a Kafka outage failing
// every record, leaves a readable log. A class's first line is logged at
// once; its next line after the interval carries suppressed=N, the lines
// dropped in between.
type RateLimitedLogger struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu      sync.Mutex
	classes map[string]*logClass
}

type logClass struct {
	last       time.Time
	suppressed int
}

// NewRateLimitedLogger logs through log at most once per class per every.
func NewRateLimitedLogger(log *slog.Logger, every time.Duration) *RateLimitedLogger {
	return &RateLimitedLogger{log: log, every: every, now: time.Now, classes: map[string]*logClass{}}
}

// Log logs msg with args at level unless a line of class was logged within
// the interval.
func (l *RateLimitedLogger) Log(ctx context.Context, level slog.Level, class, msg string, args ...any) {
	if !l.log.Enabled(ctx, level) {
		return
	}
	now := l.now()
	l.mu.Lock()
	c, ok := l.classes[class]
	if !ok {
		if len(l.classes) >= maxLogClasses {
			class = "_other"
			c, ok = l.classes[class]
		}
		if !ok {
			c = &logClass{}
			l.classes[class] = c
		}
	}
	if !c.last.IsZero() && now.Sub(c.last) < l.every {
		c.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := c.suppressed
	c.last, c.suppressed = now, 0
	l.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed, "suppressed_over", l.every)
	}
	l.log.Log(ctx, level, msg, args...)
}
