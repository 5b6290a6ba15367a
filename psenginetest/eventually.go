package psenginetest

import (
	"testing"
	"time"
)

// EventuallyWithin is how long Eventually waits: a bound for a condition
// that never holds, far above what any should take on a loaded machine.
const EventuallyWithin = 60 * time.Second

// Eventually polls cond (every few milliseconds) until it holds, and fails
// the test naming what was awaited if it does not within EventuallyWithin.
// It must be called from the test's goroutine.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(EventuallyWithin)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v", what, EventuallyWithin)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
