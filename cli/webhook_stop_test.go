package cli

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"testing"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
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

// The same for `worker`: a signal that comes before Serve began ends the
// worker with status 0.
func TestWorkerStopBeforeServe(t *testing.T) {
	backend := &fakeBackend{broker: broker.NewMemory(broker.MemoryConfig{})}
	var stderr psenginetest.SyncBuffer
	home := t.TempDir()
	p := &Program{
		Name: "test",
		Scanner: psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
			return psengine.Analysis{Verdict: psengine.Benign}, nil
		}),
		Backends: map[string]Backend{"fake": backend},
		Stdout:   io.Discard,
		Stderr:   &stderr,
		Getenv: func(k string) string {
			if k == "PSENGINE_HOME" {
				return home
			}
			return ""
		},
	}
	ctx, signal := context.WithCancel(t.Context())
	defer signal()
	testHookBeforeServe = func(e *psengine.Engine) {
		signal() // the SIGTERM comes now, before Serve
		for !errors.Is(e.Submit(t.Context(), psengine.Bounty{}), psengine.ErrClosed) {
			runtime.Gosched() // until the shutdown began
		}
	}
	t.Cleanup(func() { testHookBeforeServe = func(*psengine.Engine) {} })
	if code := p.Run(ctx, []string{"worker", "--backend", "fake"}); code != 0 {
		t.Fatalf("worker exited %d after a signal before Serve, want 0\n%s", code, stderr.String())
	}
}
