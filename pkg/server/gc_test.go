package server

import (
	"io"
	"log/slog"
	"runtime/debug"
	"testing"
)

func TestGCConfigApply(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	oldPercent := debug.SetGCPercent(100)
	oldLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(oldPercent)
		debug.SetMemoryLimit(oldLimit)
	})

	t.Run("defaults", func(t *testing.T) {
		t.Setenv("GOGC", "")
		t.Setenv("GOMEMLIMIT", "")
		c := GCConfig{Percent: 400}
		c.Apply(300<<20, log)
		if p := debug.SetGCPercent(400); p != 400 {
			t.Errorf("GC percent %d, want 400", p)
		}
		if l := debug.SetMemoryLimit(-1); l != 300<<20 {
			t.Errorf("memory limit %d, want the default %d", l, 300<<20)
		}
	})
	t.Run("explicit limit", func(t *testing.T) {
		t.Setenv("GOGC", "")
		t.Setenv("GOMEMLIMIT", "")
		c := GCConfig{Percent: 200, MemoryLimit: 1 << 30}
		c.Apply(300<<20, log)
		if l := debug.SetMemoryLimit(-1); l != 1<<30 {
			t.Errorf("memory limit %d, want %d", l, 1<<30)
		}
	})
	t.Run("environment wins", func(t *testing.T) {
		t.Setenv("GOGC", "50")
		t.Setenv("GOMEMLIMIT", "1GiB")
		debug.SetGCPercent(50)
		debug.SetMemoryLimit(1 << 30)
		c := GCConfig{Percent: 400}
		c.Apply(300<<20, log)
		if p := debug.SetGCPercent(50); p != 50 {
			t.Errorf("GC percent %d, want GOGC's 50", p)
		}
		if l := debug.SetMemoryLimit(-1); l != 1<<30 {
			t.Errorf("memory limit %d, want GOMEMLIMIT's", l)
		}
	})
	t.Run("validate", func(t *testing.T) {
		if err := (&GCConfig{Percent: 0}).Validate(); err == nil {
			t.Error("gc percent 0 accepted")
		}
		if err := (&GCConfig{Percent: 100, MemoryLimit: -1}).Validate(); err == nil {
			t.Error("negative memory limit accepted")
		}
	})
}
