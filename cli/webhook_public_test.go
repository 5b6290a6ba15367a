package cli

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/deliver"
	"github.com/polyswarm/psengine/psenginetest"
)

// outcome is what the engine reported for the one bounty of a run.
type outcome struct {
	err       error // nil: answered and delivered
	delivered int64 // answers the response URL received
	stderr    string
}

// webhookAnswerRun serves `webhook --backend local` with extra flags,
// posts it one bounty whose response_url is a loopback server, waits for
// the engine's hook to report its outcome, and stops the webhook.
func webhookAnswerRun(t *testing.T, flags ...string) outcome {
	t.Helper()
	var hits atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		hits.Add(1)
	}))
	defer sink.Close()

	dir := t.TempDir()
	settled := make(chan error, 1)
	out, stdout := io.Pipe()
	var stderr psenginetest.SyncBuffer
	p := &Program{
		Name: "test",
		Scanner: psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
			return psengine.Analysis{Verdict: psengine.Benign}, nil
		}),
		Options: []psengine.Option{
			psengine.OnSuccess(func(context.Context, psengine.Result) { settled <- nil }),
			psengine.OnError(func(_ context.Context, res psengine.Result) { settled <- res.Err }),
		},
		Stdout: stdout,
		Stderr: &stderr,
		Getenv: func(k string) string { return map[string]string{"PSENGINE_HOME": dir, "PSENGINE_RUNTIME_DIR": dir}[k] },
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	args := append([]string{"webhook", "--insecure", "--addr", "127.0.0.1", "-p", "0"}, flags...)
	go func() {
		c := p.Run(ctx, args)
		stdout.Close() // a run that fails before listening ends the read below
		code <- c
	}()

	base := listeningURL(t, out, &stderr)
	b := psenginetest.Bounty([]byte("x"), psenginetest.WithID("42"),
		psenginetest.WithResponseURL(sink.URL+"/answer"), psenginetest.WithExpiration(time.Now().Add(time.Hour)))
	if code := postBounty(t, base, b, "d-42", ""); code != http.StatusAccepted {
		t.Fatalf("bounty: %d, want 202; stderr:\n%s", code, stderr.String())
	}

	var o outcome
	select {
	case o.err = <-settled:
	case <-time.After(30 * time.Second): // a bound, should the engine never settle the bounty
		t.Fatalf("the bounty was not settled within 30s; stderr:\n%s", stderr.String())
	}
	stopRun(t, cancel, code, &stderr)
	o.delivered, o.stderr = hits.Load(), stderr.String()
	return o
}

// By default the webhook does not POST an answer into its own network: the
// answer to a loopback response_url is refused at once, for good, and the
// failure is reported (error hook and log) naming the address.
func TestWebhookRefusesPrivateResponseURL(t *testing.T) {
	o := webhookAnswerRun(t)
	if !errors.Is(o.err, psengine.ErrDeliver) || !errors.Is(o.err, psengine.ErrPermanent) || !errors.Is(o.err, deliver.ErrNotPublic) {
		t.Errorf("reported error %v, want ErrDeliver, ErrPermanent and deliver.ErrNotPublic", o.err)
	}
	if o.delivered != 0 {
		t.Errorf("the loopback response URL received %d answers, want none", o.delivered)
	}
	for _, want := range []string{"deliver: answer rejected", "not a public address: 127.0.0.1", "bounty failed"} {
		if !strings.Contains(o.stderr, want) {
			t.Errorf("log lacks %q:\n%s", want, o.stderr)
		}
	}
}

// --allow-private (development) lets answers reach a loopback response_url.
func TestWebhookAllowPrivateDeliversToLoopback(t *testing.T) {
	o := webhookAnswerRun(t, "--allow-private")
	if o.err != nil {
		t.Errorf("reported error %v, want the answer delivered", o.err)
	}
	if o.delivered != 1 {
		t.Errorf("the loopback response URL received %d answers, want 1", o.delivered)
	}
	if !strings.Contains(o.stderr, "response URLs on private addresses (--allow-private)") {
		t.Errorf("no warning about --allow-private in the log:\n%s", o.stderr)
	}
}
