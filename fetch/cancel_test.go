package fetch_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"testing/synctest"
	"time"

	"github.com/polyswarm/psengine/fetch"
)

func TestFetchCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := fetch.Open(ctx, "data:,x"); !errors.Is(err, context.Canceled) {
		t.Errorf("Fetch = %v, want context.Canceled", err)
	}
}

// cancelling is an endless source that cancels its context once it has
// produced after bytes, as if the caller gave up mid-read.
type cancelling struct {
	endless
	after  int64
	cancel func()
}

func (c *cancelling) Read(p []byte) (int, error) {
	if c.read >= c.after {
		c.cancel()
	}
	return c.endless.Read(p)
}

func TestFetchCancelledMidRead(t *testing.T) {
	p, dir := testPolicy(t)
	p.MemoryLimit = 1000
	cause := errors.New("bounty expired")
	ctx, cancel := context.WithCancelCause(t.Context())
	src := &cancelling{after: 50_000, cancel: func() { cancel(cause) }}
	p.Openers = map[string]fetch.Opener{"src": func(context.Context, *url.URL) (io.ReadCloser, error) {
		return io.NopCloser(src), nil
	}}
	_, err := p.Fetch(ctx, "src://x", "")
	if !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
		t.Fatalf("Fetch = %v, want context.Canceled with its cause", err)
	}
	// The read that cancels still returns its chunk (at most 128 KiB, after
	// a read that may have started just short of 50 kB); none may follow.
	if src.read > 50_000+2*128<<10 {
		t.Errorf("read %d bytes; want Fetch to stop at the first read after cancellation", src.read)
	}
	assertEmptyDir(t, dir)
	assertOneLine(t, err)
}

func TestFetchHTTPCancelledMidBody(t *testing.T) {
	started := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(randomBytes(64<<10, 11))
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done() // the body never ends by itself
	}))
	defer srv.Close()
	p, dir := testPolicy(t)
	p.MemoryLimit = 1000
	p.Client = srv.Client()
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-started
		cancel()
	}()
	_, err := p.Fetch(ctx, srv.URL, "")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch = %v, want context.Canceled", err)
	}
	assertEmptyDir(t, dir)
}

// blocking is a well-behaved source that has nothing to send until ctx ends.
type blocking struct{ ctx context.Context }

func (b blocking) Read([]byte) (int, error) {
	<-b.ctx.Done()
	return 0, b.ctx.Err()
}

func TestFetchDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, dir := testPolicy(t)
		p.Openers = map[string]fetch.Opener{"slow": func(ctx context.Context, _ *url.URL) (io.ReadCloser, error) {
			return io.NopCloser(blocking{ctx}), nil
		}}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		start := time.Now()
		_, err := p.Fetch(ctx, "slow://x", "")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Fetch = %v, want context.DeadlineExceeded", err)
		}
		if waited := time.Since(start); waited != time.Minute {
			t.Errorf("Fetch returned after %v, want exactly the 1m deadline", waited)
		}
		assertEmptyDir(t, dir)
	})
}
