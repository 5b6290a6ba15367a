package natscli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/polyswarm/psengine/psenginetest"
)

// waitForLog polls a log until it contains s (bounded, so a broken test
// fails instead of hanging).
func waitForLog(t *testing.T, log *psenginetest.SyncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %q in:\n%s", s, log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
