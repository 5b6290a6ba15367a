// Package clitest drives an engine program's webhook in the test's own
// process, as PolySwarm would drive it, for acceptance tests of programs
// built on package cli: start it on loopback, post bounties, collect the
// answers at their response_url, read the operations endpoints, stop it.
package clitest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/cli"
	"github.com/polyswarm/psengine/psenginetest"
	"github.com/polyswarm/psengine/webhook"
)

// StopWithin bounds how long Webhook.Stop waits for the program to exit.
const StopWithin = 30 * time.Second

// Answers is a response_url server: it keeps the answer POSTed to
// URL(id), by id.
type Answers struct {
	srv *httptest.Server
	mu  sync.Mutex
	got map[string]psengine.Answer
}

// NewAnswers starts an Answers server, closed when the test ends.
func NewAnswers(tb testing.TB) *Answers {
	a := &Answers{got: map[string]psengine.Answer{}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	tb.Cleanup(a.srv.Close)
	return a
}

func (a *Answers) serve(w http.ResponseWriter, r *http.Request) {
	var ans psengine.Answer
	if err := json.NewDecoder(r.Body).Decode(&ans); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	a.got[strings.TrimPrefix(r.URL.Path, "/answer/")] = ans
	a.mu.Unlock()
}

// URL is the response_url for the bounty id.
func (a *Answers) URL(id string) string { return a.srv.URL + "/answer/" + id }

// Wait returns the answer to the bounty id, waiting for it (see
// psenginetest.Eventually).
func (a *Answers) Wait(tb testing.TB, id string) psengine.Answer {
	tb.Helper()
	var ans psengine.Answer
	psenginetest.Eventually(tb, "the answer to bounty "+id, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		var ok bool
		ans, ok = a.got[id]
		return ok
	})
	return ans
}

// Webhook is a program's webhook command running in the test's process.
type Webhook struct {
	URL        string                   // where bounties are posted
	MetricsURL string                   // where /metrics, /healthz and /readyz are served
	Stderr     *psenginetest.SyncBuffer // the program's stderr

	cancel  context.CancelFunc
	code    chan int
	stopped bool
}

// StartWebhook runs `NAME webhook` of p with args, on loopback ports of its
// own, unsigned (--insecure), allowed to reach loopback artifacts and
// response URLs (--allow-private), and with its operations endpoints
// (--metrics-addr); it sets p's Stdout and Stderr. It returns once the
// program listens, and stops it when the test ends (see Stop).
func StartWebhook(t *testing.T, p *cli.Program, args ...string) *Webhook {
	t.Helper()
	out, stdout := io.Pipe()
	w := &Webhook{Stderr: &psenginetest.SyncBuffer{}, code: make(chan int, 1)}
	p.Stdout, p.Stderr = stdout, w.Stderr
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() {
		c := p.Run(ctx, append([]string{"webhook", "--insecure", "--allow-private", "--addr", "127.0.0.1", "-p", "0",
			"--metrics-addr", "127.0.0.1:0"}, args...))
		stdout.Close()
		w.code <- c
	}()
	t.Cleanup(func() { w.Stop(t) })
	lines := bufio.NewReader(out)
	readLine := func(prefix string) string {
		l, err := lines.ReadString('\n')
		rest, ok := strings.CutPrefix(strings.TrimSpace(l), prefix)
		if err != nil || !ok {
			t.Fatalf("line %q (%v), want %q...; stderr:\n%s", l, err, prefix, w.Stderr)
		}
		return rest
	}
	w.MetricsURL = readLine("metrics on ")
	w.URL = readLine("listening on ")
	go func() { _, _ = io.Copy(io.Discard, lines) }()
	return w
}

// Post posts b to the webhook as the bounty event of delivery "d-"+id,
// unsigned, and fails the test unless it is accepted (202).
func (w *Webhook) Post(t *testing.T, id string, b psengine.Bounty) {
	t.Helper()
	body, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(webhook.HeaderEvent, "bounty")
	req.Header.Set(webhook.HeaderDelivery, "d-"+id)
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("bounty %s: %d, want 202", id, res.StatusCode)
	}
}

// Get returns the status and body of a GET of the operations endpoint
// path ("/metrics", "/healthz", "/readyz").
func (w *Webhook) Get(t *testing.T, path string) (int, string) {
	t.Helper()
	return Get(t, w.MetricsURL+path)
}

// Stop stops the program as SIGINT would and fails the test unless it
// exits 0 within StopWithin. Later calls do nothing.
func (w *Webhook) Stop(t *testing.T) {
	t.Helper()
	if w.stopped {
		return
	}
	w.stopped = true
	w.cancel()
	select {
	case c := <-w.code:
		if c != 0 {
			t.Errorf("exit %d; stderr:\n%s", c, w.Stderr)
		}
	case <-time.After(StopWithin):
		t.Fatalf("the webhook did not stop within %v", StopWithin)
	}
}

// Get returns the status and body of a GET of url.
func Get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	res, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}
