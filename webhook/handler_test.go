package webhook_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/polyswarm/psengine/broker"

	"github.com/google/go-cmp/cmp"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
	"github.com/polyswarm/psengine/webhook"
)

func TestStatusCodes(t *testing.T) {
	body := bountyJSON(t, "42", []byte("hello"))
	big := bytes.Repeat([]byte(" "), 4097)
	other := bountyJSON(t, "43", []byte("other"))
	upper := strings.ToUpper(webhook.Sign(secret, body))

	tests := []struct {
		name    string
		req     func() *http.Request
		subErr  error // what the Submitter answers
		want    answer
		queued  int
		allowed string // the Allow header
	}{
		{name: "liveness GET of the root", req: func() *http.Request { return httptest.NewRequest("GET", "/", nil) },
			want: answer{Code: 200, Status: "OK"}},
		{name: "GET of the path bounties are posted to", req: func() *http.Request { return httptest.NewRequest("GET", "/polyswarm/hook", nil) },
			want: answer{Code: 200, Status: "OK"}},
		{name: "HEAD", req: func() *http.Request { return httptest.NewRequest("HEAD", "/", nil) },
			want: answer{Code: 200}},
		{name: "HEAD of the path bounties are posted to", req: func() *http.Request { return httptest.NewRequest("HEAD", "/polyswarm/hook", nil) },
			want: answer{Code: 200}},
		{name: "bounty posted to a path", req: func() *http.Request {
			r := signed("bounty", "d-1", body)
			r.URL.Path = "/polyswarm/hook"
			return r
		}, want: answer{Code: 202, Status: "ACCEPTED"}, queued: 1},
		{name: "PUT", req: func() *http.Request { return httptest.NewRequest("PUT", "/", bytes.NewReader(body)) },
			want: answer{Code: 405, Status: "REJECTED", Error: true}, allowed: "GET, HEAD, POST"},

		{name: "bounty", req: func() *http.Request { return signed("bounty", "d-1", body) },
			want: answer{Code: 202, Status: "ACCEPTED"}, queued: 1},
		{name: "bounty event in capitals", req: func() *http.Request { return signed("BOUNTY", "d-1", body) },
			want: answer{Code: 202, Status: "ACCEPTED"}, queued: 1},
		{name: "bounty without delivery id", req: func() *http.Request { return signed("bounty", "", body) },
			want: answer{Code: 202, Status: "ACCEPTED"}, queued: 1},
		{name: "signature in upper-case hex", req: func() *http.Request {
			return post(body, webhook.HeaderEvent, "bounty", webhook.HeaderSignature, upper)
		}, want: answer{Code: 202, Status: "ACCEPTED"}, queued: 1},
		{name: "ping with empty body", req: func() *http.Request { return signed("ping", "d-2", nil) },
			want: answer{Code: 200, Status: "OK"}},
		{name: "ping with a body", req: func() *http.Request { return signed("Ping", "d-2", []byte(`{"hello":"world"}`)) },
			want: answer{Code: 200, Status: "OK"}},

		{name: "missing signature", req: func() *http.Request { return post(body, webhook.HeaderEvent, "bounty") },
			want: answer{Code: 400, Status: "REJECTED", Error: true}},
		{name: "unsigned ping", req: func() *http.Request { return post(nil, webhook.HeaderEvent, "ping") },
			want: answer{Code: 400, Status: "REJECTED", Error: true}},
		{name: "signed with another secret", req: func() *http.Request {
			return post(body, webhook.HeaderEvent, "bounty", webhook.HeaderSignature, webhook.Sign("wrong", body))
		}, want: answer{Code: 401, Status: "REJECTED", Error: true}},
		{name: "signature of another body", req: func() *http.Request {
			return post(body, webhook.HeaderEvent, "bounty", webhook.HeaderSignature, webhook.Sign(secret, other))
		}, want: answer{Code: 401, Status: "REJECTED", Error: true}},
		{name: "signature not hex", req: func() *http.Request {
			return post(body, webhook.HeaderEvent, "bounty", webhook.HeaderSignature, strings.Repeat("zz", 32))
		}, want: answer{Code: 401, Status: "REJECTED", Error: true}},
		{name: "signature truncated", req: func() *http.Request {
			return post(body, webhook.HeaderEvent, "bounty", webhook.HeaderSignature, webhook.Sign(secret, body)[:63])
		}, want: answer{Code: 401, Status: "REJECTED", Error: true}},
		{name: "signature with a sha256= prefix", req: func() *http.Request {
			return post(body, webhook.HeaderEvent, "bounty", webhook.HeaderSignature, "sha256="+webhook.Sign(secret, body))
		}, want: answer{Code: 401, Status: "REJECTED", Error: true}},
		{name: "signature of the empty body on a bounty", req: func() *http.Request {
			return post(body, webhook.HeaderEvent, "bounty", webhook.HeaderSignature, webhook.Sign(secret, nil))
		}, want: answer{Code: 401, Status: "REJECTED", Error: true}},

		{name: "unsupported event", req: func() *http.Request { return signed("assertion", "d-3", body) },
			want: answer{Code: 400, Status: "REJECTED", Error: true}},
		{name: "missing event", req: func() *http.Request {
			return post(body, webhook.HeaderSignature, webhook.Sign(secret, body))
		}, want: answer{Code: 400, Status: "REJECTED", Error: true}},
		{name: "bounty not JSON", req: func() *http.Request { return signed("bounty", "d-4", []byte("{not json")) },
			want: answer{Code: 400, Status: "REJECTED", Error: true}},
		{name: "bounty empty", req: func() *http.Request { return signed("bounty", "d-4", nil) },
			want: answer{Code: 400, Status: "REJECTED", Error: true}},
		{name: "bounty without artifact_uri", req: func() *http.Request {
			return signed("bounty", "d-4", []byte(`{"id":1,"artifact_type":"file","expiration":"2030-01-01T00:00:00Z"}`))
		}, want: answer{Code: 400, Status: "REJECTED", Error: true}},
		{name: "bounty with a bad artifact_type", req: func() *http.Request {
			return signed("bounty", "d-4", []byte(`{"id":1,"artifact_type":"blob","artifact_uri":"https://x.test/a"}`))
		}, want: answer{Code: 400, Status: "REJECTED", Error: true}},
		{name: "delivery id too long", req: func() *http.Request {
			return signed("bounty", strings.Repeat("d", webhook.MaxDeliveryIDLen+1), body)
		}, want: answer{Code: 400, Status: "REJECTED", Error: true}},

		{name: "body over the cap, length announced", req: func() *http.Request { return signed("bounty", "d-5", big) },
			want: answer{Code: 413, Status: "REJECTED", Error: true}},
		{name: "body over the cap, length unknown", req: func() *http.Request {
			r := signed("bounty", "d-5", big)
			r.ContentLength = -1
			r.Body = io.NopCloser(bytes.NewReader(big))
			return r
		}, want: answer{Code: 413, Status: "REJECTED", Error: true}},

		{name: "queue full", req: func() *http.Request { return signed("bounty", "d-6", body) },
			subErr: fmt.Errorf("%w: 1024 jobs queued", psengine.ErrQueueFull),
			want:   answer{Code: 503, Status: "UNAVAILABLE", Error: true, RetryAfter: "5"}},
		{name: "engine shut down", req: func() *http.Request { return signed("bounty", "d-6", body) },
			subErr: psengine.ErrClosed,
			want:   answer{Code: 503, Status: "UNAVAILABLE", Error: true, RetryAfter: "5"}},
		{name: "q failure", req: func() *http.Request { return signed("bounty", "d-6", body) },
			subErr: errors.New("connection refused"),
			want:   answer{Code: 503, Status: "UNAVAILABLE", Error: true, RetryAfter: "5"}},
		{name: "bounty the engine finds malformed", req: func() *http.Request { return signed("bounty", "d-6", body) },
			subErr: &psengine.BountyError{Field: "id", Reason: "missing"},
			want:   answer{Code: 400, Status: "REJECTED", Error: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &queue{err: tt.subErr}
			h := newHandler(t, q, webhook.WithMaxBody(4096))
			tt.want.Allow = tt.allowed
			got := serve(t, h, tt.req())
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
			if n := len(q.taken()); n != tt.queued {
				t.Errorf("queued %d jobs, want %d", n, tt.queued)
			}
		})
	}
}

func TestAcceptedJob(t *testing.T) {
	q := &queue{}
	h := newHandler(t, q)
	body := bountyJSON(t, "18446744073709551617", []byte("content"), psenginetest.WithPhase(psengine.Arbitration))
	want, err := psengine.ParseBounty(body)
	if err != nil {
		t.Fatal(err)
	}

	if got := serve(t, h, signed("bounty", "delivery-1", body)); got.Code != 202 {
		t.Fatalf("got %+v, want 202", got)
	}
	if got := serve(t, h, signed("bounty", "", body)); got.Code != 202 {
		t.Fatalf("got %+v, want 202", got)
	}
	wantJobs := []broker.Job{
		{ID: "delivery-1", Bounty: want},
		{ID: "18446744073709551617/arbitration", Bounty: want},
	}
	if diff := cmp.Diff(wantJobs, q.taken(), psenginetest.BountyOptions); diff != "" {
		t.Errorf("jobs (-want +got):\n%s", diff)
	}
}

func TestNoSecret(t *testing.T) {
	for _, opts := range [][]webhook.Option{nil, {webhook.WithSecret("")}} {
		if _, err := webhook.NewHandler(&queue{}, opts...); !errors.Is(err, webhook.ErrNoSecret) {
			t.Errorf("NewHandler(%v) error %v, want ErrNoSecret", opts, err)
		}
	}
}

func TestInsecure(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	q := &queue{}
	h, err := webhook.NewHandler(q, webhook.WithInsecure(), webhook.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "INSECURE") {
		t.Errorf("no warning logged at start; logs:\n%s", logs.String())
	}
	body := bountyJSON(t, "7", []byte("x"))
	if got := serve(t, h, post(body, webhook.HeaderEvent, "bounty")); got.Code != 202 {
		t.Errorf("unsigned bounty in insecure mode: %+v, want 202", got)
	}
	if got := serve(t, h, post(nil, webhook.HeaderEvent, "ping", webhook.HeaderSignature, "junk")); got.Code != 200 {
		t.Errorf("ping with a junk signature in insecure mode: %+v, want 200", got)
	}

	// A secret wins over insecure mode: requests are verified.
	h = newHandler(t, q, webhook.WithInsecure())
	if got := serve(t, h, post(body, webhook.HeaderEvent, "bounty")); got.Code != 400 {
		t.Errorf("unsigned bounty with a secret and WithInsecure: %+v, want 400", got)
	}
}

func TestInvalidOptions(t *testing.T) {
	for _, o := range []webhook.Option{
		webhook.WithMaxBody(0), webhook.WithMaxBody(-1),
		webhook.WithRetryAfter(0), webhook.WithLogger(nil), nil,
	} {
		if _, err := webhook.NewHandler(&queue{}, webhook.WithSecret(secret), o); !errors.Is(err, webhook.ErrInvalidOption) {
			t.Errorf("NewHandler(%v) error %v, want ErrInvalidOption", o, err)
		}
	}
	if _, err := webhook.NewHandler(nil, webhook.WithSecret(secret)); !errors.Is(err, webhook.ErrInvalidOption) {
		t.Errorf("NewHandler(nil) error %v, want ErrInvalidOption", err)
	}
}

func TestOptionsPrintWithoutTheSecret(t *testing.T) {
	got := fmt.Sprint([]webhook.Option{webhook.WithSecret("hunter2"), webhook.WithMaxBody(10),
		webhook.WithRetryAfter(1500 * 1e6)})
	want := "[WithSecret(...) WithMaxBody(10) WithRetryAfter(1.5s)]"
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestRetryAfterRoundsUp(t *testing.T) {
	q := &queue{err: psengine.ErrQueueFull}
	h := newHandler(t, q, webhook.WithRetryAfter(1500*1e6))
	if got := serve(t, h, signed("bounty", "d", bountyJSON(t, "1", nil))); got.RetryAfter != "2" {
		t.Errorf("Retry-After %q, want 2", got.RetryAfter)
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"id":1}`)
	sig := webhook.Sign(secret, body)
	if err := webhook.Verify(secret, body, sig); err != nil {
		t.Errorf("Verify(good) = %v", err)
	}
	if err := webhook.Verify(secret, body, ""); !errors.Is(err, webhook.ErrMissingSignature) {
		t.Errorf("Verify(empty) = %v, want ErrMissingSignature", err)
	}
	for _, bad := range []string{sig[:63], sig + "0", "sha256=" + sig, strings.Repeat("g", 64), webhook.Sign("x", body)} {
		if err := webhook.Verify(secret, body, bad); !errors.Is(err, webhook.ErrBadSignature) {
			t.Errorf("Verify(%q) = %v, want ErrBadSignature", bad, err)
		}
	}
	// The documented form, HMAC-SHA256 in lowercase hex, checked against a
	// published known answer.
	if got, want := webhook.Sign("key", []byte("The quick brown fox jumps over the lazy dog")),
		"f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

// TestRealEngineQueueFullAndClosed drives a real engine: a full queue is
// answered 503 (the bounty is not dropped: the retry is taken once there
// is room), and a shut-down engine is answered 503.
func TestRealEngineQueueFullAndClosed(t *testing.T) {
	q := broker.NewMemory(broker.MemoryConfig{Capacity: 1})
	engine := psengine.New(psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
		return psengine.Analysis{Verdict: psengine.Unknown}, nil
	}), psengine.WithBroker(q))
	h := newHandler(t, engine)

	first, second := bountyJSON(t, "1", []byte("a")), bountyJSON(t, "2", []byte("b"))
	if got := serve(t, h, signed("bounty", "d-1", first)); got.Code != 202 {
		t.Fatalf("first bounty: %+v, want 202", got)
	}
	if got := serve(t, h, signed("bounty", "d-2", second)); got.Code != 503 || got.RetryAfter == "" {
		t.Fatalf("bounty over capacity: %+v, want 503 with Retry-After", got)
	}
	// Make room: consume the queued job.
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = q.Consume(ctx, func(context.Context, broker.Job) error { cancel(); return nil })
	})
	wg.Wait()
	if got := serve(t, h, signed("bounty", "d-2", second)); got.Code != 202 {
		t.Fatalf("retried bounty: %+v, want 202", got)
	}
	if err := engine.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := serve(t, h, signed("bounty", "d-3", bountyJSON(t, "3", []byte("c")))); got.Code != 503 {
		t.Fatalf("bounty after shutdown: %+v, want 503", got)
	}
	q.Close()
}
