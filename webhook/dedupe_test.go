package webhook_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
)

// The broker decides what is a repeat (its ID or its content key is taken):
// the handler answers a refused duplicate 200 DUPLICATE, so that PolySwarm
// does not send it again, and keeps no memory of its own.
func TestRepeatedDelivery(t *testing.T) {
	q := &queue{err: fmt.Errorf("%w: job d-1", psengine.ErrDuplicate)}
	h := newHandler(t, q)
	body := bountyJSON(t, "5", []byte("x"))
	if got := serve(t, h, signed("bounty", "d-1", body)); got.Code != 200 || got.Status != "DUPLICATE" {
		t.Fatalf("a delivery the broker has: %+v, want 200 DUPLICATE", got)
	}
	q.fail(nil)
	if got := serve(t, h, signed("bounty", "d-1", body)); got.Code != 202 {
		t.Fatalf("the same delivery once the broker forgot it: %+v, want 202", got)
	}
}

// A delivery refused for now (503) is taken when it is retried.
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

// An expired bounty is refused with a 4xx that says so, not accepted and
// then dropped.
func TestExpiredBountyRefused(t *testing.T) {
	e := psenginetest.Engine(t, psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
		return psengine.Analysis{Verdict: psengine.Unknown}, nil
	}))
	h := newHandler(t, e)
	body := bountyJSON(t, "5", []byte("x"), psenginetest.WithResponseURL(responseURL),
		psenginetest.WithExpiration(time.Now().Add(-time.Minute)))
	got := serve(t, h, signed("bounty", "d-1", body))
	if got.Code != 422 || got.Status != "EXPIRED" {
		t.Fatalf("an expired bounty: %+v, want 422 EXPIRED", got)
	}
}
