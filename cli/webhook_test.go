package cli

import (
	"bytes"
	"context"
	"flag"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
)

// fakeBackend is a registered backend whose queue is an in-process broker.
type fakeBackend struct {
	broker *broker.Memory
	mu     sync.Mutex
	closed int
}

func (f *fakeBackend) Flags(*flag.FlagSet) Connector {
	return func(context.Context, *slog.Logger) (Session, error) { return fakeSession{f}, nil }
}

type fakeSession struct{ f *fakeBackend }

func (s fakeSession) Broker() broker.Broker            { return s.f.broker }
func (s fakeSession) WorkerOptions() []psengine.Option { return nil }
func (s fakeSession) Analyze(context.Context, []Request) iter.Seq[psengine.Result] {
	return func(func(psengine.Result) bool) {}
}
func (s fakeSession) Close() error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.closed++
	return nil
}

// With a registered backend, `webhook` is intake only: signed bounties go
// to the backend's queue, and the session is closed on the way out.
func TestWebhookWithBackend(t *testing.T) {
	backend := &fakeBackend{broker: broker.NewMemory(broker.MemoryConfig{})}
	out, stdout := io.Pipe()
	var stderr psenginetest.SyncBuffer // read by listeningURL while the program writes
	p := &Program{
		Name: "test",
		Scanner: psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
			panic("no scan in intake")
		}),
		Backends: map[string]Backend{"fake": backend},
		Stdout:   stdout,
		Stderr:   &stderr,
		Getenv: func(k string) string {
			if k == "PSENGINE_WEBHOOK_SECRET" {
				return "s"
			}
			return ""
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	go func() {
		c := p.Run(ctx, []string{"webhook", "--backend", "fake", "--addr", "127.0.0.1", "-p", "0"})
		stdout.Close() // ends listeningURL's drain
		code <- c
	}()

	base := listeningURL(t, out, &stderr)
	if code := postBounty(t, base, psenginetest.Bounty([]byte("x"), psenginetest.WithID("77"),
		psenginetest.WithResponseURL("https://api.polyswarm.test/answer/77")), "d-77", "s"); code != http.StatusAccepted {
		t.Fatalf("bounty: %d, want 202", code)
	}
	if n := backend.broker.Len(); n != 1 {
		t.Fatalf("backend queue holds %d jobs, want 1", n)
	}

	stopRun(t, cancel, code, &stderr)
	backend.mu.Lock()
	defer backend.mu.Unlock()
	if backend.closed != 1 {
		t.Errorf("session closed %d times, want 1", backend.closed)
	}
	backend.broker.Close()
}

func TestWebhookUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  string // PSENGINE_WEBHOOK_SECRET
		want string
	}{
		{[]string{"webhook"}, "", "no webhook secret"},
		{[]string{"webhook", "-p", "70000"}, "s", "want a port"},
		{[]string{"webhook", "--backend", "nats"}, "s", `--backend "nats"`},
		{[]string{"webhook", "--backend", "fake", "--allow-file"}, "s", "--allow-file applies to --backend local or process only"},
		{[]string{"webhook", "extra"}, "s", "takes no arguments"},
	} {
		var stderr bytes.Buffer
		p := &Program{Name: "test", Scanner: psengine.ScannerFunc(nil), Stderr: &stderr, Stdout: io.Discard,
			Backends: map[string]Backend{"fake": &fakeBackend{}},
			Getenv: func(k string) string {
				if k == "PSENGINE_WEBHOOK_SECRET" {
					return tt.env
				}
				return ""
			}}
		if code := p.Run(context.Background(), tt.args); code != 2 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%q: status %d, stderr %q; want 2 and %q", tt.args, code, stderr.String(), tt.want)
		}
	}
}
