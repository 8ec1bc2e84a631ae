package testenv

import (
	"testing"
	"time"
)

// Eventually polls f every 200 ms until it returns nil, and fails the test
// with f's last error once timeout has passed. Unlike require.Eventually it
// says why the condition never held.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
