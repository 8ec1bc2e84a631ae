package server

import (
	"errors"
	"flag"
	"log/slog"
	"os"
	"runtime/debug"
)

// GCConfig tunes Go's garbage collector for a process whose live heap is
// small and whose memory is bounded by a budget of its own (the gateway's
// in-flight bytes): collect less often than Go's default, and let a memory
// limit, not the collection rate, bound the heap.
type GCConfig struct {
	// Percent is GOGC: the heap may grow this many percent over the live
	// heap before the next collection.
	Percent int `yaml:"gc_percent"`
	// MemoryLimit is GOMEMLIMIT in bytes (a soft limit: the collector runs
	// as often as needed to stay below it). 0: the caller's default.
	MemoryLimit int64 `yaml:"memory_limit_bytes"`
}

// RegisterFlags registers -runtime.gc-percent and -runtime.memory-limit-bytes.
func (c *GCConfig) RegisterFlags(fs *flag.FlagSet, defaultPercent int, limitHelp string) {
	fs.IntVar(&c.Percent, "runtime.gc-percent", defaultPercent, "Garbage collection target percentage, as GOGC (which wins when set).")
	fs.Int64Var(&c.MemoryLimit, "runtime.memory-limit-bytes", 0, "Soft memory limit of the Go runtime, as GOMEMLIMIT (which wins when set). 0: "+limitHelp+".")
}

// Validate checks the configuration.
func (c *GCConfig) Validate() error {
	if c.Percent <= 0 {
		return errors.New("runtime.gc-percent must be positive")
	}
	if c.MemoryLimit < 0 {
		return errors.New("runtime.memory-limit-bytes must not be negative")
	}
	return nil
}

// Apply sets the collector's target and the memory limit (defaultLimit if
// MemoryLimit is 0), except what GOGC or GOMEMLIMIT already set: an
// operator's environment wins over built-in defaults.
func (c *GCConfig) Apply(defaultLimit int64, log *slog.Logger) {
	if v := os.Getenv("GOGC"); v != "" {
		log.Info("GOGC is set; -runtime.gc-percent ignored", "GOGC", v)
	} else {
		debug.SetGCPercent(c.Percent)
	}
	limit := c.MemoryLimit
	if limit == 0 {
		limit = defaultLimit
	}
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		log.Info("GOMEMLIMIT is set; -runtime.memory-limit-bytes ignored", "GOMEMLIMIT", v)
	} else if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	// SetMemoryLimit with a negative value only reads the limit.
	log.Debug("garbage collector", "memory_limit_bytes", debug.SetMemoryLimit(-1))
}
