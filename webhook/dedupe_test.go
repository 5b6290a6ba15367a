package webhook_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/webhook"
)

func TestRepeatedDelivery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := &queue{}
		h := newHandler(t, q, webhook.WithDedupe(10*time.Minute, 1000))
		body := bountyJSON(t, "5", []byte("x"))

		if got := serve(t, h, signed("bounty", "d-1", body)); got.Code != 202 {
			t.Fatalf("first delivery: %+v, want 202", got)
		}
		time.Sleep(9 * time.Minute)
		if got := serve(t, h, signed("bounty", "d-1", body)); got.Code != 200 || got.Status != "DUPLICATE" {
			t.Fatalf("repeated delivery: %+v, want 200 DUPLICATE", got)
		}
		if n := len(q.taken()); n != 1 {
			t.Fatalf("queued %d jobs after a repeat, want 1", n)
		}
		// Past the window the id is forgotten (the broker's own dedupe on
		// the job id is then the last line).
		time.Sleep(time.Minute)
		if got := serve(t, h, signed("bounty", "d-1", body)); got.Code != 202 {
			t.Fatalf("delivery after the window: %+v, want 202", got)
		}
		if n := len(q.taken()); n != 2 {
			t.Fatalf("queued %d jobs, want 2", n)
		}
	})
}

// A delivery refused for now (503) is not remembered: its retry is taken.
func TestRefusedDeliveryNotRemembered(t *testing.T) {
	q := &queue{err: psengine.ErrQueueFull}
	h := newHandler(t, q)
	body := bountyJSON(t, "5", []byte("x"))
	if got := serve(t, h, signed("bounty", "d-1", body)); got.Code != 503 {
		t.Fatalf("got %+v, want 503", got)
	}
	q.fail(nil)
	if got := serve(t, h, signed("bounty", "d-1", body)); got.Code != 202 {
		t.Fatalf("retry: %+v, want 202", got)
	}
}

// Unauthenticated or malformed requests never reach the dedupe memory, so
// they cannot make a genuine delivery look like a repeat.
func TestRejectedRequestsDoNotPoisonDedupe(t *testing.T) {
	q := &queue{}
	h := newHandler(t, q)
	body := bountyJSON(t, "5", []byte("x"))
	for _, r := range []*http.Request{
		post(body, webhook.HeaderEvent, "bounty", webhook.HeaderDelivery, "d-1"),
		post(body, webhook.HeaderEvent, "bounty", webhook.HeaderDelivery, "d-1", webhook.HeaderSignature, webhook.Sign("wrong", body)),
		signed("bounty", "d-1", []byte(`{"id":5}`)),
		signed("ping", "d-1", nil),
	} {
		serve(t, h, r)
	}
	if got := serve(t, h, signed("bounty", "d-1", body)); got.Code != 202 {
		t.Fatalf("genuine delivery after rejected ones: %+v, want 202", got)
	}
}

func TestDedupeSizeBound(t *testing.T) {
	q := &queue{}
	h := newHandler(t, q, webhook.WithDedupe(time.Hour, 2))
	body := bountyJSON(t, "5", []byte("x"))
	for _, d := range []string{"a", "b", "c"} {
		serve(t, h, signed("bounty", d, body))
	}
	if got := serve(t, h, signed("bounty", "c", body)); got.Status != "DUPLICATE" {
		t.Errorf("recent id: %+v, want DUPLICATE", got)
	}
	if got := serve(t, h, signed("bounty", "a", body)); got.Code != 202 {
		t.Errorf("id evicted by the size bound: %+v, want 202", got)
	}
}

func TestDedupeOff(t *testing.T) {
	q := &queue{}
	h := newHandler(t, q, webhook.WithDedupe(0, 0))
	body := bountyJSON(t, "5", []byte("x"))
	for range 2 {
		if got := serve(t, h, signed("bounty", "d-1", body)); got.Code != 202 {
			t.Fatalf("got %+v, want 202", got)
		}
	}
	if n := len(q.taken()); n != 2 {
		t.Errorf("queued %d jobs, want 2 (the broker deduplicates)", n)
	}
}

// Copies of one delivery arriving together: exactly one is queued; the
// others are acknowledged once it is, or told to retry while it is being
// queued, never acknowledged before.
func TestConcurrentRepeats(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	var mu sync.Mutex
	var jobs []psengine.Job
	sub := webhook.SubmitFunc(func(_ context.Context, job psengine.Job) error {
		entered <- struct{}{}
		<-release // the first copy is slow to queue
		mu.Lock()
		defer mu.Unlock()
		jobs = append(jobs, job)
		return nil
	})
	h := newHandler(t, sub)
	body := bountyJSON(t, "5", []byte("x"))
	first := make(chan answer)
	go func() { first <- serve(t, h, signed("bounty", "same", body)) }()
	<-entered

	// While the first copy is being queued, the others must retry.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if got := serve(t, h, signed("bounty", "same", body)); got.Code != 503 || got.RetryAfter == "" {
				t.Errorf("copy while the first is queued: %+v, want 503 with Retry-After", got)
			}
		})
	}
	wg.Wait()
	close(release)
	if got := <-first; got.Code != 202 {
		t.Fatalf("first copy: %+v, want 202", got)
	}
	if got := serve(t, h, signed("bounty", "same", body)); got.Code != 200 || got.Status != "DUPLICATE" {
		t.Errorf("copy after the first was queued: %+v, want 200 DUPLICATE", got)
	}
	if len(jobs) != 1 {
		t.Errorf("queued %d jobs, want 1", len(jobs))
	}
}
