package ingester

import (
	"context"
	"log/slog"
	"time"

	"github.com/tributary-io/tributary/pkg/server"
)

// logLimiter lets through one warning per cause per interval and counts
// the ones it held back, so that an outage of a sink or of Kafka, retried
// by every partition every few hundred milliseconds, writes a line per
// cause every interval instead of flooding the log. The next line of a
// cause carries "suppressed", the number held back since the last one.
//
// Causes are the fixed messages of the call sites ("sink write failed,
// retrying", ...), so the set stays small. It is the gateway's
// server.RateLimitedLogger with the message as the class.
type logLimiter struct {
	rl *server.RateLimitedLogger
}

// logEvery is the interval of a cause's warnings: an operator watching a
// log during an outage sees it continue, and a minute-long outage costs
// six lines per cause.
const logEvery = 10 * time.Second

func newLogLimiter(log *slog.Logger, every time.Duration) *logLimiter {
	return &logLimiter{rl: server.NewRateLimitedLogger(log, every)}
}

// Warn logs msg with args unless msg was logged less than the interval ago.
func (l *logLimiter) Warn(msg string, args ...any) {
	l.rl.Log(context.Background(), slog.LevelWarn, msg, msg, args...)
}
