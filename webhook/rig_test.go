package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/deliver"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/webhook"
)

// rig is an engine behind a webhook handler whose answers go, over an
// in-memory network, to a scripted receiver standing in for PolySwarm's
// response_url. Build it inside a synctest bubble: the fake clock then
// makes backoff, timeouts and expiry exact.
type rig struct {
	t        *testing.T
	engine   *psengine.Engine
	handler  *webhook.Handler
	receiver *receiver
	outcomes chan outcome // one per bounty, from the engine's hooks

	mu      sync.Mutex
	scanned []string // the content of each artifact scanned
	stopped bool     // the test called shutdown itself
}

// outcome is what a hook saw for one bounty.
type outcome struct {
	ID       string
	Analysis psengine.Analysis // success only
	Err      error             // failure only
	At       time.Time
}

// marker makes the rig's scanner answer malicious.
var marker = []byte("MALWARE")

// newRig makes a rig whose receiver answers each POST with the next step of
// script (the last step repeats). scan, when not nil, runs before the
// scanner looks for the marker (to block, or to see the context).
func newRig(t *testing.T, scan func(ctx context.Context, content string) error, script []step, opts ...psengine.Option) *rig {
	t.Helper()
	r := &rig{t: t, receiver: &receiver{t: t, script: script}, outcomes: make(chan outcome, 100)}

	pn := newPipeNet()
	srv := &http.Server{Handler: r.receiver}
	go func() { _ = srv.Serve(pn) }()
	tr := &http.Transport{DialContext: pn.DialContext}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		_ = srv.Close()
	})
	client := &deliver.Client{HTTP: &http.Client{Transport: tr}}
	// The engine's default deliverer, but on the in-memory network.
	deliverer := psengine.DelivererFunc(func(ctx context.Context, b psengine.Bounty, a psengine.Answer) error {
		body, err := json.Marshal(a)
		if err != nil {
			return psengine.Permanent(err)
		}
		_, err = client.Post(ctx, b.ResponseURL, body, b.Expiration)
		return err
	})

	scanner := psengine.ScannerFunc(func(ctx context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
		data, err := a.Bytes()
		if err != nil {
			return psengine.Analysis{}, err
		}
		r.mu.Lock()
		r.scanned = append(r.scanned, string(data))
		r.mu.Unlock()
		if scan != nil {
			if err := scan(ctx, string(data)); err != nil {
				return psengine.Analysis{}, err
			}
		}
		if bytes.Contains(data, marker) {
			return psengine.Analysis{Verdict: psengine.Malicious, Confidence: 0.95,
				Metadata: psengine.Metadata{MalwareFamily: "Test.Marker"}}, nil
		}
		return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.5}, nil
	})
	dir := t.TempDir()
	base := []psengine.Option{
		psengine.WithName("rig"),
		psengine.WithDirs(envdirs.Dirs{Home: dir, Temp: dir}),
		psengine.WithGetenv(func(string) string { return "" }),
		psengine.WithDeliverer(deliverer),
		psengine.OnSuccess(func(_ context.Context, res psengine.Result) {
			b, a := res.Bounty, res.Analysis
			r.outcomes <- outcome{ID: b.ID.String(), Analysis: a, At: time.Now()}
		}),
		psengine.OnError(func(_ context.Context, res psengine.Result) {
			b, err := res.Bounty, res.Err
			r.outcomes <- outcome{ID: b.ID.String(), Err: err, At: time.Now()}
		}),
	}
	r.engine = psengine.New(scanner, append(base, opts...)...)
	t.Cleanup(func() {
		r.mu.Lock()
		stopped := r.stopped
		r.mu.Unlock()
		if err := r.engine.Shutdown(context.Background()); err != nil && !stopped {
			t.Errorf("Shutdown: %v", err)
		}
	})
	r.handler = newHandler(t, r.engine)
	return r
}

// shutdown shuts the engine down (the test checks the result).
func (r *rig) shutdown(ctx context.Context) error {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	return r.engine.Shutdown(ctx)
}

// send posts a signed bounty to the handler and checks it is accepted.
func (r *rig) send(delivery string, body []byte) {
	r.t.Helper()
	if got := serve(r.t, r.handler, signed("bounty", delivery, body)); got.Code != http.StatusAccepted {
		r.t.Fatalf("bounty %s: %+v, want 202", delivery, got)
	}
}

// next waits for the next bounty's outcome (the fake clock runs meanwhile).
func (r *rig) next() outcome {
	r.t.Helper()
	select {
	case o := <-r.outcomes:
		return o
	case <-time.After(24 * time.Hour):
		r.t.Fatal("no outcome within a (fake) day")
		return outcome{}
	}
}

// quiet checks no other outcome comes within d.
func (r *rig) quiet(d time.Duration) {
	r.t.Helper()
	select {
	case o := <-r.outcomes:
		r.t.Fatalf("unexpected outcome %+v", o)
	case <-time.After(d):
	}
}

func (r *rig) scans() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.scanned...)
}

// step answers one POST at the receiver and returns the status it sent
// (0: none).
type step func(w http.ResponseWriter, req *http.Request) int

func status(code int) step {
	return func(w http.ResponseWriter, _ *http.Request) int {
		w.WriteHeader(code)
		return code
	}
}

// hang never answers: the sender's per-attempt timeout must end it.
func hang(_ http.ResponseWriter, req *http.Request) int {
	<-req.Context().Done()
	return 0
}

// receiver is the response_url: it records each POST and answers it with
// the next step of its script.
type receiver struct {
	t      *testing.T
	script []step

	mu       sync.Mutex
	attempts []attempt
}

type attempt struct {
	At     time.Time
	Path   string
	Body   string
	Status int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body := readAll(rc.t, req.Body)
	rc.mu.Lock()
	i := len(rc.attempts)
	rc.attempts = append(rc.attempts, attempt{At: time.Now(), Path: req.URL.Path, Body: body})
	s := rc.script[min(i, len(rc.script)-1)]
	rc.mu.Unlock()
	code := s(w, req)
	rc.mu.Lock()
	rc.attempts[i].Status = code
	rc.mu.Unlock()
}

func (rc *receiver) log() []attempt {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]attempt(nil), rc.attempts...)
}

// accepted returns the bodies of the answers the receiver took (2xx).
func (rc *receiver) accepted() []string {
	var out []string
	for _, a := range rc.log() {
		if a.Status >= 200 && a.Status < 300 {
			out = append(out, a.Body)
		}
	}
	return out
}
