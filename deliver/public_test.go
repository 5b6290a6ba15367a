package deliver_test

// PublicOnly against httptest loopback servers: the refusal happens in the
// dialer, before any byte leaves, and is permanent.

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/polyswarm/psengine/deliver"
	"github.com/polyswarm/psengine/fetch"
	"github.com/polyswarm/psengine/pipeline"
)

// A PublicOnly Client refuses a loopback response URL at once: one attempt
// that never reaches the server, no wait (the bubble's clock does not move),
// a permanent error naming the address, and a log record.
func TestPublicOnlyRefusesLoopbackAtOnce(t *testing.T) {
	rv := &receiver{plan: []int{200}}
	srv := httptest.NewServer(rv)
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	for _, u := range []string{srv.URL + "/answer?token=s3cret", "https://127.0.0.1:" + port + "/answer"} {
		synctest.Test(t, func(t *testing.T) {
			var logs bytes.Buffer
			c := &deliver.Client{PublicOnly: true, Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
			rec, err := c.Post(t.Context(), u, answer, time.Now().Add(time.Hour))
			if !errors.Is(err, pipeline.ErrPermanent) || !errors.Is(err, deliver.ErrNotPublic) || errors.Is(err, deliver.ErrExpired) {
				t.Fatalf("Post(%s) error = %v, want ErrPermanent and ErrNotPublic", u, err)
			}
			if !strings.Contains(err.Error(), "not a public address: 127.0.0.1") {
				t.Errorf("Post(%s) error %q does not name the address", u, err)
			}
			if diff := cmp.Diff(deliver.Receipt{Attempts: 1}, rec); diff != "" {
				t.Errorf("Post(%s) Receipt (-want +got):\n%s", u, diff)
			}
			if !strings.Contains(logs.String(), "not a public address: 127.0.0.1") {
				t.Errorf("Post(%s): no log record of the refusal:\n%s", u, logs.String())
			}
			if strings.Contains(logs.String()+err.Error(), "s3cret") {
				t.Errorf("Post(%s): the URL's query leaked: %v\n%s", u, err, logs.String())
			}
		})
	}
	if requests, _ := rv.counts(); requests != 0 {
		t.Errorf("the server saw %d requests, want none", requests)
	}
}

// The address dialled is judged, not the URL's host: a name resolving to
// loopback is refused too. (Outside a synctest bubble: the resolver's state
// must not belong to one.)
func TestPublicOnlyRefusesNamesResolvingToLoopback(t *testing.T) {
	rv := &receiver{plan: []int{200}}
	srv := httptest.NewServer(rv)
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	c := &deliver.Client{PublicOnly: true}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // bounds the test should the refusal be retried
	defer cancel()
	rec, err := c.Post(ctx, "http://localhost:"+port+"/answer", answer, time.Time{})
	if !errors.Is(err, pipeline.ErrPermanent) || !errors.Is(err, deliver.ErrNotPublic) {
		t.Fatalf("Post error = %v, want ErrPermanent and ErrNotPublic", err)
	}
	if requests, _ := rv.counts(); rec.Attempts != 1 || requests != 0 {
		t.Errorf("Receipt.Attempts = %d, server saw %d; want 1 and 0", rec.Attempts, requests)
	}
}

// Without PublicOnly the default client delivers to loopback.
func TestWithoutPublicOnlyLoopbackIsDelivered(t *testing.T) {
	rv := &receiver{plan: []int{200}}
	srv := httptest.NewServer(rv)
	defer srv.Close()

	rec, err := (&deliver.Client{}).Post(t.Context(), srv.URL+"/answer", answer, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatalf("Post: %v", err)
	}
	if _, accepted := rv.counts(); rec.Attempts != 1 || rec.Status != 200 || !cmp.Equal([][]byte{answer}, accepted) {
		t.Errorf("Receipt = %+v, accepted %q; want the answer delivered once", rec, accepted)
	}
}

// PublicOnly applies to the default client: with a client of the host's
// own, Post refuses the combination before any attempt, as fetch does.
func TestPublicOnlyWithOwnHTTPIsBadConfig(t *testing.T) {
	rv := &receiver{plan: []int{200}}
	srv := httptest.NewServer(rv)
	defer srv.Close()

	c := &deliver.Client{PublicOnly: true, HTTP: srv.Client()}
	rec, err := c.Post(t.Context(), srv.URL, answer, time.Now().Add(time.Minute))
	if !errors.Is(err, pipeline.ErrPermanent) || !errors.Is(err, deliver.ErrBadConfig) {
		t.Fatalf("Post error = %v, want ErrPermanent and ErrBadConfig", err)
	}
	if !strings.Contains(err.Error(), "fetch.PublicOnlyControl") {
		t.Errorf("Post error %q does not say what to do instead", err)
	}
	if requests, _ := rv.counts(); rec.Attempts != 0 || requests != 0 {
		t.Errorf("Receipt.Attempts = %d, server saw %d; want 0", rec.Attempts, requests)
	}
}

// A host's own client with fetch.PublicOnlyControl on its dialer (what
// PublicOnly's documentation suggests) gets the same permanent refusal.
func TestOwnHTTPWithFetchControlIsPermanent(t *testing.T) {
	rv := &receiver{plan: []int{200}}
	srv := httptest.NewServer(rv)
	defer srv.Close()

	tr := &http.Transport{DialContext: (&net.Dialer{Control: fetch.PublicOnlyControl}).DialContext}
	defer tr.CloseIdleConnections()
	synctest.Test(t, func(t *testing.T) {
		c := &deliver.Client{HTTP: &http.Client{Transport: tr}}
		rec, err := c.Post(t.Context(), srv.URL, answer, time.Now().Add(time.Hour))
		if !errors.Is(err, pipeline.ErrPermanent) || !errors.Is(err, fetch.ErrNotAllowed) {
			t.Fatalf("Post error = %v, want ErrPermanent and fetch.ErrNotAllowed", err)
		}
		if diff := cmp.Diff(deliver.Receipt{Attempts: 1}, rec); diff != "" {
			t.Errorf("Receipt (-want +got):\n%s", diff)
		}
	})
	if requests, _ := rv.counts(); requests != 0 {
		t.Errorf("the server saw %d requests, want none", requests)
	}
}
