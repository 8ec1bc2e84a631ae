//go:build !linux

package remotewrite

// rusageThread falls back to the whole process (RUSAGE_SELF) where there
// is no per-thread figure.
const rusageThread = 0
