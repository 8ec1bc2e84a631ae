package server

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRateLimitedLogger(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	l := NewRateLimitedLogger(log, 10*time.Second)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	ctx := context.Background()

	for i := 0; i < 100; i++ {
		l.Log(ctx, slog.LevelInfo, "metrics 400", "write refused", "code", 400)
		l.Log(ctx, slog.LevelWarn, "metrics 503", "write failed", "code", 503)
		l.Log(ctx, slog.LevelDebug, "debug", "not shown")
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2, buf.String())
	require.Contains(t, lines[0], `level=INFO msg="write refused" code=400`)
	require.NotContains(t, lines[0], "suppressed")
	require.Contains(t, lines[1], `level=WARN msg="write failed" code=503`)

	buf.Reset()
	now = now.Add(11 * time.Second)
	l.Log(ctx, slog.LevelInfo, "metrics 400", "write refused", "code", 400)
	require.Contains(t, buf.String(), "code=400 suppressed=99 suppressed_over=10s")
	buf.Reset()
	l.Log(ctx, slog.LevelInfo, "metrics 400", "write refused", "code", 400)
	require.Empty(t, buf.String())
}
