package cli

import (
	"context"
	"log/slog"
	"testing"

	"github.com/polyswarm/psengine"
)

// A signal that comes before the engine began serving its intake store
// (the engine is shut down first, as a SIGTERM right after start does)
// stops the webhook cleanly: what is recorded stays so, and stop reports
// no error (it reported psengine.ErrClosed, and the process exited 1).
func TestWebhookStopBeforeServe(t *testing.T) {
	home := t.TempDir()
	p := &Program{
		Name: "test",
		Scanner: psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
			return psengine.Analysis{Verdict: psengine.Benign}, nil
		}),
		Getenv: func(k string) string {
			if k == "PSENGINE_HOME" {
				return home
			}
			return ""
		},
	}
	shutdownFirst := make(chan struct{})
	testHookBeforeServe = func(e *psengine.Engine) {
		defer close(shutdownFirst)
		_ = e.Shutdown(t.Context())
	}
	t.Cleanup(func() { testHookBeforeServe = func(*psengine.Engine) {} })
	_, stop, err := p.intake(t.Context(), slog.New(slog.DiscardHandler), nil, 1, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-shutdownFirst
	if err := stop(t.Context()); err != nil {
		t.Fatalf("stop after a shutdown that came before Serve: %v", err)
	}
}
