package deliver_test

// Real-network behaviour against httptest loopback servers, with tiny
// backoffs so the tests are fast.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/polyswarm/psengine/deliver"
	"github.com/polyswarm/psengine/pipeline"
)

// receiver is a response_url: it answers each POST with the next status of
// its plan (the last repeats) and keeps what it accepted.
type receiver struct {
	plan []int

	mu       sync.Mutex
	requests int
	accepted [][]byte
}

func (rv *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	rv.mu.Lock()
	code := rv.plan[min(rv.requests, len(rv.plan)-1)]
	rv.requests++
	if code/100 == 2 {
		rv.accepted = append(rv.accepted, body)
	}
	rv.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if code/100 == 2 {
		io.WriteString(w, `{"status":"ACCEPTED"}`)
	} else {
		io.WriteString(w, `{"error":"`+http.StatusText(code)+`"}`)
	}
}

func (rv *receiver) counts() (requests int, accepted [][]byte) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return rv.requests, rv.accepted
}

// fast returns a Client with tiny backoffs on its own transport, closed
// when the test ends.
func fast(t *testing.T) *deliver.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &deliver.Client{
		HTTP:       &http.Client{Transport: tr},
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		AttemptTimeout: 5 * time.Second,
	}
}

func TestLoopback503TwiceThen200(t *testing.T) {
	rv := &receiver{plan: []int{503, 503, 200}}
	srv := httptest.NewServer(rv)
	defer srv.Close()

	var logs bytes.Buffer
	c := fast(t)
	c.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rec, err := c.Post(t.Context(), srv.URL+"/answer?token=s3cret", answer, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatalf("Post: %v", err)
	}
	requests, accepted := rv.counts()
	if requests != 3 {
		t.Errorf("server saw %d POSTs, want 3", requests)
	}
	if diff := cmp.Diff([][]byte{answer}, accepted); diff != "" {
		t.Errorf("accepted answers (-want +got):\n%s", diff)
	}
	if rec.Attempts != 3 || rec.Status != 200 {
		t.Errorf("Receipt = %+v, want 3 attempts ending in 200", rec)
	}
	for _, want := range []string{`"attempt":1`, `"attempt":2`, `"attempts":3`, `"status":503`} {
		if !bytes.Contains(logs.Bytes(), []byte(want)) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
	if bytes.Contains(logs.Bytes(), []byte("s3cret")) {
		t.Errorf("logs leak the URL's query:\n%s", logs.String())
	}
}

func TestLoopback400IsOneAttempt(t *testing.T) {
	rv := &receiver{plan: []int{400, 200}}
	srv := httptest.NewServer(rv)
	defer srv.Close()

	rec, err := fast(t).Post(t.Context(), srv.URL, answer, time.Now().Add(time.Minute))
	if !errors.Is(err, pipeline.ErrPermanent) {
		t.Fatalf("Post error = %v, want ErrPermanent", err)
	}
	var se *deliver.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("Post error = %v, want a *StatusError", err)
	}
	if diff := cmp.Diff(&deliver.StatusError{Code: 400, Body: `{"error":"Bad Request"}`}, se); diff != "" {
		t.Errorf("StatusError (-want +got):\n%s", diff)
	}
	if requests, _ := rv.counts(); requests != 1 || rec.Attempts != 1 {
		t.Errorf("server saw %d POSTs, Receipt.Attempts = %d; want 1", requests, rec.Attempts)
	}
}

func TestLoopback429WithRetryAfter(t *testing.T) {
	var mu sync.Mutex
	var arrivals []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		first := len(arrivals) == 1
		mu.Unlock()
		if first {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()

	rec, err := fast(t).Post(t.Context(), srv.URL, answer, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatalf("Post: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(arrivals) != 2 || rec.Attempts != 2 || rec.Status != 202 {
		t.Fatalf("server saw %d POSTs, Receipt = %+v; want 2 ending in 202", len(arrivals), rec)
	}
	// A lower bound only: Post must not retry before Retry-After (the
	// backoff alone is at most 5ms).
	if gap := arrivals[1].Sub(arrivals[0]); gap < time.Second {
		t.Errorf("retried %v after a 429 with Retry-After: 1", gap)
	}
}

func TestLoopbackHangingServerTimesOutThenRetries(t *testing.T) {
	release := make(chan struct{})
	var requests atomic.Int32
	firstCanceled := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if requests.Add(1) == 1 {
			select {
			case <-r.Context().Done(): // the client gave up on this attempt
				close(firstCanceled)
			case <-release:
			}
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	defer close(release)

	c := fast(t)
	c.AttemptTimeout = 100 * time.Millisecond
	rec, err := c.Post(t.Context(), srv.URL, answer, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatalf("Post: %v", err)
	}
	if rec.Attempts != 2 || rec.Status != 200 || requests.Load() != 2 {
		t.Errorf("Receipt = %+v, server saw %d; want 2 attempts ending in 200", rec, requests.Load())
	}
	select {
	case <-firstCanceled:
	case <-time.After(5 * time.Second): // a bound on a wait, not a sleep
		t.Errorf("the hanging attempt's connection was never abandoned")
	}
}

// dialHook is a real transport that calls onErr with each attempt's error.
type dialHook struct {
	tr    *http.Transport
	onErr func(error)
}

func (d dialHook) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := d.tr.RoundTrip(r)
	if err != nil {
		d.onErr(err)
	}
	return resp, err
}

func TestLoopbackConnectionRefusedThenUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: the first attempt is refused

	rv := &receiver{plan: []int{200}}
	var srv *httptest.Server
	var firstErr error
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hook := dialHook{tr: tr, onErr: func(err error) {
		if srv != nil {
			return
		}
		firstErr = err
		l, lerr := net.Listen("tcp", addr) // the receiver comes up
		if lerr != nil {
			t.Errorf("relisten on %s: %v", addr, lerr)
			return
		}
		srv = httptest.NewUnstartedServer(rv)
		srv.Listener.Close()
		srv.Listener = l
		srv.Start()
	}}
	c := fast(t)
	c.HTTP = &http.Client{Transport: hook}
	rec, err := c.Post(t.Context(), "http://"+addr+"/answer", answer, time.Now().Add(time.Minute))
	if srv != nil {
		defer srv.Close()
	}
	if err != nil {
		t.Fatalf("Post: %v", err)
	}
	if !errors.Is(firstErr, syscall.ECONNREFUSED) {
		t.Errorf("first attempt failed with %v, want connection refused", firstErr)
	}
	if _, accepted := rv.counts(); len(accepted) != 1 || rec.Attempts != 2 {
		t.Errorf("accepted %d answers, Receipt = %+v; want 1 answer after 2 attempts", len(accepted), rec)
	}
}

func TestLoopbackExpiry(t *testing.T) {
	rv := &receiver{plan: []int{503}}
	srv := httptest.NewServer(rv)
	defer srv.Close()

	rec, err := fast(t).Post(t.Context(), srv.URL, answer, time.Now().Add(200*time.Millisecond))
	if !errors.Is(err, deliver.ErrExpired) {
		t.Fatalf("Post error = %v, want ErrExpired", err)
	}
	// The last attempt either got its 503 or was cut short by the deadline.
	var se *deliver.StatusError
	if !(errors.As(err, &se) && se.Code == 503) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Post error = %v, want the last attempt's 503 or its deadline", err)
	}
	// The server may not have counted an attempt the deadline cut short.
	if requests, _ := rv.counts(); requests > rec.Attempts || requests < rec.Attempts-1 || requests < 2 {
		t.Errorf("server saw %d POSTs, Receipt.Attempts = %d; want them to agree (give or take the cut attempt) and >= 2", requests, rec.Attempts)
	}
}

func TestLoopbackRedirects(t *testing.T) {
	rv := &receiver{plan: []int{200}}
	mux := http.NewServeMux()
	mux.Handle("/final", rv)
	mux.Handle("/moved", http.RedirectHandler("/final", http.StatusPermanentRedirect))
	mux.Handle("/found", http.RedirectHandler("/final", http.StatusFound))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer http.DefaultTransport.(*http.Transport).CloseIdleConnections()

	c := &deliver.Client{} // the default client's redirect policy
	rec, err := c.Post(t.Context(), srv.URL+"/moved", answer, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatalf("308: Post: %v", err)
	}
	if _, accepted := rv.counts(); rec.Attempts != 1 || len(accepted) != 1 || !bytes.Equal(accepted[0], answer) {
		t.Errorf("308: Receipt = %+v, accepted %q; want the answer re-posted once", rec, accepted)
	}

	// 302 would make net/http re-send as a GET without the answer.
	rec, err = c.Post(t.Context(), srv.URL+"/found", answer, time.Now().Add(time.Minute))
	if !errors.Is(err, pipeline.ErrPermanent) {
		t.Fatalf("302: Post error = %v, want ErrPermanent", err)
	}
	if requests, _ := rv.counts(); requests != 1 || rec.Status != 302 {
		t.Errorf("302: followed the redirect (server saw %d), Receipt = %+v", requests, rec)
	}
}

func TestLoopbackReusesOneConnection(t *testing.T) {
	rv := &receiver{plan: []int{503, 500, 200, 503, 200, 202}}
	srv := httptest.NewUnstartedServer(rv)
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	c := fast(t)
	for range 3 {
		if _, err := c.Post(t.Context(), srv.URL, answer, time.Time{}); err != nil {
			t.Fatalf("Post: %v", err)
		}
	}
	if requests, _ := rv.counts(); requests != 6 || conns.Load() != 1 {
		t.Errorf("%d POSTs over %d connections, want 6 over 1", requests, conns.Load())
	}
}

func TestLoopbackConcurrentPosts(t *testing.T) {
	rv := &receiver{plan: []int{200}}
	srv := httptest.NewServer(rv)
	defer srv.Close()
	c := fast(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := c.Post(context.WithoutCancel(t.Context()), srv.URL, answer, time.Now().Add(time.Minute)); err != nil {
				t.Errorf("Post: %v", err)
			}
		})
	}
	wg.Wait()
	if _, accepted := rv.counts(); len(accepted) != 8 {
		t.Errorf("accepted %d answers, want 8", len(accepted))
	}
}
