package deliver_test

// Timing behaviour under testing/synctest: the bubble's fake clock makes
// backoff, Retry-After, per-attempt timeouts and expiry exact, and a fake
// http.RoundTripper stands in for the network (which synctest cannot fake).

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/polyswarm/psengine/deliver"
	"github.com/polyswarm/psengine/pipeline"
)

const answerURL = "https://polyswarm.example/v1/bounties/7/answer"

var answer = []byte(`{"verdict":"malicious","bid":62500000000000000,"metadata":{"malware_family":"EICAR"}}`)

// reply produces the answer for one attempt.
type reply func(req *http.Request) (*http.Response, error)

func status(code int, headers ...string) reply {
	return func(req *http.Request) (*http.Response, error) {
		return respond(req, code, "", headers...), nil
	}
}

func statusBody(code int, body string) reply {
	return func(req *http.Request) (*http.Response, error) {
		return respond(req, code, body), nil
	}
}

// hang blocks until the attempt's context ends, like a server that never answers.
func hang(req *http.Request) (*http.Response, error) {
	<-req.Context().Done()
	return nil, req.Context().Err()
}

func respond(req *http.Request, code int, body string, headers ...string) *http.Response {
	h := http.Header{}
	for i := 0; i+1 < len(headers); i += 2 {
		h.Set(headers[i], headers[i+1])
	}
	return &http.Response{
		StatusCode: code, Status: http.StatusText(code), Header: h, Request: req,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Body: &trackedBody{r: strings.NewReader(body)}, ContentLength: int64(len(body)),
	}
}

// trackedBody records whether the client read it to EOF and closed it.
type trackedBody struct {
	r      io.Reader
	read   int
	eof    bool
	closed bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read += n
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *trackedBody) Close() error { b.closed = true; return nil }

// script is a fake transport: attempt i gets replies[i], the last reply repeats.
type script struct {
	replies []reply

	mu        sync.Mutex
	starts    []time.Time // when each attempt reached the "server"
	bodies    []string
	headers   []http.Header
	responses []*http.Response
}

func (s *script) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	i := len(s.starts)
	s.starts = append(s.starts, time.Now())
	s.bodies = append(s.bodies, string(body))
	s.headers = append(s.headers, req.Header.Clone())
	r := s.replies[min(i, len(s.replies)-1)]
	s.mu.Unlock()
	resp, err := r(req)
	if resp != nil {
		s.mu.Lock()
		s.responses = append(s.responses, resp)
		s.mu.Unlock()
	}
	return resp, err
}

// offsets returns each attempt's start relative to t0.
func (s *script) offsets(t0 time.Time) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Duration
	for _, st := range s.starts {
		out = append(out, st.Sub(t0))
	}
	return out
}

func client(s *script) *deliver.Client {
	return &deliver.Client{HTTP: &http.Client{Transport: s}, MinBackoff: time.Second, MaxBackoff: time.Second, AttemptTimeout: 5 * time.Second}
}

func wantStatusError(t *testing.T, err error, code int) {
	t.Helper()
	var se *deliver.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("error %v does not wrap a *StatusError", err)
	}
	if se.Code != code {
		t.Errorf("StatusError.Code = %d, want %d", se.Code, code)
	}
}

func TestBackoffGrowsExponentiallyWithJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{replies: []reply{status(503)}}
		c := client(s)
		c.MinBackoff, c.MaxBackoff = time.Second, 16*time.Second
		t0 := time.Now()
		rec, err := c.Post(t.Context(), answerURL, answer, t0.Add(10*time.Minute))
		if !errors.Is(err, deliver.ErrExpired) {
			t.Fatalf("Post error = %v, want ErrExpired", err)
		}
		wantStatusError(t, err, 503)
		offs := s.offsets(t0)
		if rec.Attempts != len(offs) {
			t.Errorf("Receipt.Attempts = %d, but the transport saw %d attempts", rec.Attempts, len(offs))
		}
		if len(offs) < 40 {
			t.Fatalf("only %d attempts in 10 minutes of 1s..16s backoff", len(offs))
		}
		// Every gap but the last (the final attempt fitted before the
		// deadline) lies within [b/2, b], b = min(16s, 1s·2^(n-1)).
		b := time.Second
		for n := 1; n < len(offs)-1; n, b = n+1, min(2*b, 16*time.Second) {
			if gap := offs[n] - offs[n-1]; gap < b/2 || gap > b {
				t.Errorf("wait before retry %d = %v, want within [%v, %v]", n, gap, b/2, b)
			}
		}
		if rec.Duration > 10*time.Minute {
			t.Errorf("Post returned after %v, past the 10m deadline", rec.Duration)
		}
	})
}

func TestFinalAttemptIsFittedBeforeTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{replies: []reply{status(503)}}
		c := client(s)
		c.MinBackoff, c.MaxBackoff, c.AttemptTimeout = time.Minute, time.Minute, 4*time.Second
		t0 := time.Now()
		// The first backoff (30s..60s) overshoots the 20s deadline, so one
		// last attempt starts with min(4s, 20s/2) left, at 16s.
		rec, err := c.Post(t.Context(), answerURL, answer, t0.Add(20*time.Second))
		if !errors.Is(err, deliver.ErrExpired) {
			t.Fatalf("Post error = %v, want ErrExpired", err)
		}
		if msg := err.Error(); !strings.Contains(msg, "final attempt") || strings.Contains(msg, "asked to wait") {
			t.Errorf("Post error = %q, want it to say the final attempt failed", msg)
		}
		if diff := cmp.Diff([]time.Duration{0, 16 * time.Second}, s.offsets(t0)); diff != "" {
			t.Errorf("attempt times (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(deliver.Receipt{Attempts: 2, Status: 503, Duration: 16 * time.Second}, rec); diff != "" {
			t.Errorf("Receipt (-want +got):\n%s", diff)
		}
	})
}

func TestRetryAfterIsHonoured(t *testing.T) {
	tests := []struct {
		name  string
		first func(t0 time.Time) reply
		gap   time.Duration
	}{
		{"429 delay-seconds", func(time.Time) reply { return status(429, "Retry-After", "7") }, 7 * time.Second},
		{"503 HTTP date", func(t0 time.Time) reply {
			return status(503, "Retry-After", t0.Add(20*time.Second).UTC().Format(http.TimeFormat))
		}, 20 * time.Second},
		{"malformed value falls back to backoff", func(time.Time) reply { return status(429, "Retry-After", "soon") }, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				t0 := time.Now()
				s := &script{replies: []reply{tt.first(t0), status(200)}}
				c := client(s)
				c.MinBackoff, c.MaxBackoff = time.Millisecond, time.Millisecond
				rec, err := c.Post(t.Context(), answerURL, answer, t0.Add(time.Hour))
				if err != nil {
					t.Fatalf("Post: %v", err)
				}
				offs := s.offsets(t0)
				if len(offs) != 2 {
					t.Fatalf("attempts at %v, want 2", offs)
				}
				if gap := offs[1] - offs[0]; gap < tt.gap/2 || gap > tt.gap {
					t.Errorf("wait before retry = %v, want %v (jitter down to half for backoff)", gap, tt.gap)
				}
				if tt.gap >= time.Second && offs[1]-offs[0] != tt.gap {
					t.Errorf("wait before retry = %v, want exactly Retry-After %v", offs[1]-offs[0], tt.gap)
				}
				if rec.Attempts != 2 || rec.Status != 200 {
					t.Errorf("Receipt = %+v, want 2 attempts ending in 200", rec)
				}
			})
		})
	}
}

func TestRetryAfterIsALowerBoundOnTheWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for range 20 {
			s := &script{replies: []reply{status(503, "Retry-After", "3"), status(200)}}
			c := client(s)
			c.MinBackoff, c.MaxBackoff = 4*time.Second, 4*time.Second // jittered to [2s, 4s]
			t0 := time.Now()
			if _, err := c.Post(t.Context(), answerURL, answer, time.Time{}); err != nil {
				t.Fatalf("Post: %v", err)
			}
			if gap := s.offsets(t0)[1]; gap < 3*time.Second || gap > 4*time.Second {
				t.Fatalf("wait = %v, want max(Retry-After 3s, backoff in [2s,4s])", gap)
			}
		}
	})
}

func TestRetryAfterPastTheDeadlineGivesUpAtOnce(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter func(t0 time.Time) string
		margin     time.Duration
	}{
		{"seconds past deadline", func(time.Time) string { return "3600" }, 0},
		{"date past deadline", func(t0 time.Time) string { return t0.Add(time.Hour).UTC().Format(http.TimeFormat) }, 0},
		{"seconds inside the deadline but inside the margin", func(time.Time) string { return "8" }, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				t0 := time.Now()
				s := &script{replies: []reply{status(429, "Retry-After", tt.retryAfter(t0)), status(200)}}
				c := client(s)
				c.Margin = tt.margin
				rec, err := c.Post(t.Context(), answerURL, answer, t0.Add(10*time.Second))
				if !errors.Is(err, deliver.ErrExpired) {
					t.Fatalf("Post error = %v, want ErrExpired", err)
				}
				wantStatusError(t, err, 429)
				// The message tells this apart from reaching the deadline.
				if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "asked to wait") {
					t.Errorf("Post error = %q, want DeadlineExceeded and a message saying the server asked to wait", err)
				}
				if diff := cmp.Diff(deliver.Receipt{Attempts: 1, Status: 429}, rec); diff != "" {
					t.Errorf("Receipt (-want +got):\n%s", diff)
				}
			})
		})
	}
}

func TestExpiryHonoursMargin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{replies: []reply{status(502)}}
		c := client(s)
		c.Margin = 3 * time.Second
		t0 := time.Now()
		rec, err := c.Post(t.Context(), answerURL, answer, t0.Add(10*time.Second))
		if !errors.Is(err, deliver.ErrExpired) {
			t.Fatalf("Post error = %v, want ErrExpired", err)
		}
		wantStatusError(t, err, 502)
		offs := s.offsets(t0)
		if last := offs[len(offs)-1]; last >= 7*time.Second {
			t.Errorf("last attempt at %v, want before deadline-margin 7s", last)
		}
		if rec.Duration > 7*time.Second {
			t.Errorf("Post returned after %v, want by 7s", rec.Duration)
		}
		if rec.Attempts != len(offs) || rec.Attempts < 7 {
			t.Errorf("Receipt.Attempts = %d, transport saw %d; want >= 7 with 0.5s..1s waits over 7s", rec.Attempts, len(offs))
		}
	})
}

func TestDeadlineAlreadyPassedSendsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{replies: []reply{status(200)}}
		c := client(s)
		for _, deadline := range []time.Time{time.Now(), time.Now().Add(-time.Hour)} {
			rec, err := c.Post(t.Context(), answerURL, answer, deadline)
			if !errors.Is(err, deliver.ErrExpired) {
				t.Errorf("Post error = %v, want ErrExpired", err)
			}
			if rec.Attempts != 0 {
				t.Errorf("Receipt.Attempts = %d, want 0", rec.Attempts)
			}
		}
		c.Margin = 2 * time.Second
		if _, err := c.Post(t.Context(), answerURL, answer, time.Now().Add(time.Second)); !errors.Is(err, deliver.ErrExpired) {
			t.Errorf("deadline within the margin: Post error = %v, want ErrExpired", err)
		}
		if n := len(s.offsets(time.Now())); n != 0 {
			t.Errorf("transport saw %d attempts, want 0", n)
		}
	})
}

func TestPerAttemptTimeoutThenRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{replies: []reply{hang, status(202)}}
		c := client(s) // 5s per attempt, 0.5s..1s backoff
		t0 := time.Now()
		rec, err := c.Post(t.Context(), answerURL, answer, t0.Add(time.Minute))
		if err != nil {
			t.Fatalf("Post: %v", err)
		}
		offs := s.offsets(t0)
		if len(offs) != 2 {
			t.Fatalf("attempts at %v, want 2", offs)
		}
		if gap := offs[1]; gap < 5500*time.Millisecond || gap > 6*time.Second {
			t.Errorf("second attempt at %v, want 5s timeout + 0.5s..1s backoff", gap)
		}
		if rec.Attempts != 2 || rec.Status != 202 {
			t.Errorf("Receipt = %+v, want 2 attempts ending in 202", rec)
		}
	})
}

func TestHangingServerUntilTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{replies: []reply{hang}}
		c := client(s)
		c.MinBackoff, c.MaxBackoff = time.Millisecond, time.Millisecond
		t0 := time.Now()
		rec, err := c.Post(t.Context(), answerURL, answer, t0.Add(12*time.Second))
		if !errors.Is(err, deliver.ErrExpired) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Post error = %v, want ErrExpired wrapping the attempt's DeadlineExceeded", err)
		}
		if rec.Attempts != 3 || rec.Status != 0 || rec.Duration != 12*time.Second {
			t.Errorf("Receipt = %+v, want 3 attempts (5s, 5s, cut at 12s), status 0, 12s", rec)
		}
	})
}

var errShutdown = errors.New("engine shutting down")

func TestCancelStopsAtOnceWithTheCause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(t.Context())
		time.AfterFunc(3*time.Second, func() { cancel(errShutdown) })
		s := &script{replies: []reply{status(503)}}
		c := client(s)
		c.MinBackoff, c.MaxBackoff = 10*time.Second, 10*time.Second
		rec, err := c.Post(ctx, answerURL, answer, time.Now().Add(time.Hour))
		if !errors.Is(err, errShutdown) || errors.Is(err, deliver.ErrExpired) {
			t.Fatalf("Post error = %v, want the cancel cause and not ErrExpired", err)
		}
		wantStatusError(t, err, 503)
		if diff := cmp.Diff(deliver.Receipt{Attempts: 1, Status: 503, Duration: 3 * time.Second}, rec); diff != "" {
			t.Errorf("Receipt (-want +got):\n%s", diff)
		}
	})
}

// A zero deadline leaves ctx's deadline in charge: Post retries until the
// next wait would reach it, fits a final attempt before it rather than wait
// in vain, and does not report the bounty's expiry.
func TestZeroDeadlineRetriesUntilContextsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		s := &script{replies: []reply{status(500)}}
		rec, err := client(s).Post(ctx, answerURL, answer, time.Time{})
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, deliver.ErrExpired) {
			t.Fatalf("Post error = %v, want context.DeadlineExceeded and not ErrExpired", err)
		}
		wantStatusError(t, err, 500)
		// Waits are 0.5s..1s: the final attempt starts with half of less
		// than 1s left.
		if rec.Duration <= 29500*time.Millisecond || rec.Duration >= 30*time.Second || rec.Attempts < 30 {
			t.Errorf("Receipt = %+v, want >= 30 attempts over (29.5s, 30s)", rec)
		}
		if ctx.Err() != nil {
			t.Errorf("Post waited for ctx's deadline to pass")
		}
	})
}

func TestNeverASecondPostAfter2xx(t *testing.T) {
	brokenBody := func(req *http.Request) (*http.Response, error) {
		resp := respond(req, 200, "")
		resp.Body = io.NopCloser(io.MultiReader(strings.NewReader(`{"sta`), errReader{}))
		return resp, nil
	}
	slowBody := func(req *http.Request) (*http.Response, error) {
		resp := respond(req, 200, "")
		resp.Body = io.NopCloser(ctxReader{req.Context()})
		return resp, nil
	}
	for name, r := range map[string]reply{
		"200": status(200), "201": status(201), "202": statusBody(202, `{"status":"ACCEPTED"}`), "204": status(204),
		"2xx with a broken body": brokenBody, "2xx whose body never ends": slowBody,
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &script{replies: []reply{r, status(500)}}
				rec, err := client(s).Post(t.Context(), answerURL, answer, time.Now().Add(time.Hour))
				if err != nil {
					t.Fatalf("Post: %v", err)
				}
				if n := len(s.offsets(time.Now())); n != 1 || rec.Attempts != 1 {
					t.Errorf("transport saw %d POSTs, Receipt.Attempts = %d; want exactly 1", n, rec.Attempts)
				}
			})
		})
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

type ctxReader struct{ ctx context.Context }

func (r ctxReader) Read([]byte) (int, error) { <-r.ctx.Done(); return 0, r.ctx.Err() }

func TestRetryableAndPermanentStatuses(t *testing.T) {
	for _, code := range []int{408, 429, 500, 502, 503, 504, 599} {
		synctest.Test(t, func(t *testing.T) {
			s := &script{replies: []reply{status(code), status(200)}}
			rec, err := client(s).Post(t.Context(), answerURL, answer, time.Now().Add(time.Hour))
			if err != nil || rec.Attempts != 2 {
				t.Errorf("status %d: Post = %+v, %v; want retried once, then nil", code, rec, err)
			}
		})
	}
	for _, code := range []int{300, 301, 302, 304, 400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 451} {
		synctest.Test(t, func(t *testing.T) {
			s := &script{replies: []reply{statusBody(code, "bid must be an integer"), status(200)}}
			rec, err := client(s).Post(t.Context(), answerURL, answer, time.Now().Add(time.Hour))
			if !errors.Is(err, pipeline.ErrPermanent) || errors.Is(err, deliver.ErrExpired) {
				t.Fatalf("status %d: Post error = %v, want ErrPermanent only", code, err)
			}
			wantStatusError(t, err, code)
			if diff := cmp.Diff(deliver.Receipt{Attempts: 1, Status: code}, rec); diff != "" {
				t.Errorf("status %d: Receipt (-want +got):\n%s", code, diff)
			}
		})
	}
}

func TestRequestCarriesTheAnswerAsGiven(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{replies: []reply{status(503), status(200)}}
		c := client(s)
		c.UserAgent = "acme-engine/1.2"
		if _, err := c.Post(t.Context(), answerURL, answer, time.Time{}); err != nil {
			t.Fatalf("Post: %v", err)
		}
		if diff := cmp.Diff([]string{string(answer), string(answer)}, s.bodies); diff != "" {
			t.Errorf("bodies posted (-want +got):\n%s", diff)
		}
		for _, h := range s.headers {
			if got := h.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q", got)
			}
			if got := h.Get("User-Agent"); got != "acme-engine/1.2" {
				t.Errorf("User-Agent = %q", got)
			}
		}
		s2 := &script{replies: []reply{status(200)}}
		if _, err := client(s2).Post(t.Context(), answerURL, answer, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if got := s2.headers[0].Get("User-Agent"); got != deliver.DefaultUserAgent {
			t.Errorf("default User-Agent = %q, want %q", got, deliver.DefaultUserAgent)
		}
	})
}

func TestResponseBodiesAreCappedDrainedAndClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		big := strings.Repeat("x", 1<<20)
		small := `{"error":"busy"}`
		s := &script{replies: []reply{statusBody(503, small), statusBody(500, big), statusBody(200, small), status(200)}}
		if _, err := client(s).Post(t.Context(), answerURL, answer, time.Time{}); err != nil {
			t.Fatalf("Post: %v", err)
		}
		if len(s.responses) != 3 {
			t.Fatalf("%d responses, want 3", len(s.responses))
		}
		for i, resp := range s.responses {
			b := resp.Body.(*trackedBody)
			if !b.closed {
				t.Errorf("response %d: body not closed", i)
			}
			if b.read > 64<<10 {
				t.Errorf("response %d: read %d bytes of the body, want at most 64 KiB", i, b.read)
			}
		}
		if b := s.responses[0].Body.(*trackedBody); !b.eof {
			t.Errorf("small error body not read to EOF (connection cannot be reused)")
		}
		if b := s.responses[2].Body.(*trackedBody); !b.eof {
			t.Errorf("small 2xx body not read to EOF (connection cannot be reused)")
		}

		s = &script{replies: []reply{statusBody(400, big)}}
		_, err := client(s).Post(t.Context(), answerURL, answer, time.Time{})
		var se *deliver.StatusError
		if !errors.As(err, &se) {
			t.Fatalf("Post error = %v, want a *StatusError", err)
		}
		if diff := cmp.Diff(big[:512], se.Body); diff != "" {
			t.Errorf("StatusError.Body (-want +got):\n%s", diff)
		}
		if len(err.Error()) > 700 {
			t.Errorf("error message is %d bytes long, want the body capped", len(err.Error()))
		}
	})
}

func TestUnusableURLIsPermanentWithoutAnAttempt(t *testing.T) {
	for _, u := range []string{"", "ftp://polyswarm.example/answer", "/v1/answer", "https://", "http://[::1", "file:///etc/passwd"} {
		s := &script{replies: []reply{status(200)}}
		rec, err := client(s).Post(context.Background(), u, answer, time.Time{})
		if !errors.Is(err, pipeline.ErrPermanent) {
			t.Errorf("Post(%q) error = %v, want ErrPermanent", u, err)
		}
		if rec.Attempts != 0 || len(s.starts) != 0 {
			t.Errorf("Post(%q) made %d attempts, want 0", u, rec.Attempts)
		}
	}
}

func TestCanceledContextSendsNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := &script{replies: []reply{status(200)}}
	rec, err := client(s).Post(ctx, answerURL, answer, time.Now().Add(time.Hour))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Post error = %v, want context.Canceled", err)
	}
	if rec.Attempts != 0 || len(s.starts) != 0 {
		t.Errorf("Receipt.Attempts = %d, transport saw %d; want 0", rec.Attempts, len(s.starts))
	}
}
