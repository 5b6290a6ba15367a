package webhook_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
)

// A bounty that expires while it waits in the broker (the engine holds
// WithInFlight bounties already) is discarded when its turn comes: not
// scanned, not answered, reported with ErrExpired.
func TestExpiredBountyNotScanned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		r := newRig(t, func(ctx context.Context, content string) error {
			if content == "slow" {
				<-gate
			}
			return nil
		}, []step{status(200)}, psengine.WithInFlight(1))
		now := time.Now()
		r.send("d-1", bountyJSON(t, "1", []byte("slow"), psenginetest.WithResponseURL(responseURL),
			psenginetest.WithExpiration(now.Add(10*time.Minute))))
		r.send("d-2", bountyJSON(t, "2", []byte("MALWARE"), psenginetest.WithResponseURL(responseURL),
			psenginetest.WithExpiration(now.Add(time.Minute))))
		time.Sleep(2 * time.Minute) // bounty 2 expires behind bounty 1
		close(gate)

		got := map[string]outcome{}
		for range 2 {
			o := r.next()
			got[o.ID] = o
		}
		if o := got["1"]; o.Err != nil {
			t.Errorf("bounty 1: %v, want answered", o.Err)
		}
		if o := got["2"]; !errors.Is(o.Err, psengine.ErrExpired) {
			t.Errorf("bounty 2: %v, want ErrExpired", o.Err)
		}
		r.quiet(time.Hour)
		if scans := r.scans(); len(scans) != 1 || scans[0] != "slow" {
			t.Errorf("scanned %q, want only bounty 1", scans)
		}
		if n := len(r.receiver.log()); n != 1 {
			t.Errorf("%d answers POSTed, want 1 (bounty 1's)", n)
		}
	})
}

// A bounty the engine holds, waiting for a worker while another scan takes
// it, is answered unknown (ErrTimeout) at its scan deadline, before its
// expiration: waiting counts towards the deadline, and the answer is in
// time.
func TestBountyWaitingForAWorkerAnsweredInTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate, scanning := make(chan struct{}), make(chan struct{})
		open := sync.OnceFunc(func() { close(gate) })
		defer open()
		r := newRig(t, func(ctx context.Context, content string) error {
			if content == "slow" {
				close(scanning)
				<-gate
			}
			return nil
		}, []step{status(200)}, psengine.WithWorkers(1))
		now := time.Now()
		r.send("d-1", bountyJSON(t, "1", []byte("slow"), psenginetest.WithResponseURL(responseURL),
			psenginetest.WithExpiration(now.Add(10*time.Minute))))
		<-scanning // bounty 1 holds the one worker
		r.send("d-2", bountyJSON(t, "2", []byte("MALWARE"), psenginetest.WithResponseURL(responseURL),
			psenginetest.WithExpiration(now.Add(time.Minute))))
		o := r.next()
		if o.ID != "2" || !errors.Is(o.Err, psengine.ErrTimeout) {
			t.Fatalf("first outcome %+v, want bounty 2 timed out", o)
		}
		if !o.At.Before(now.Add(time.Minute)) {
			t.Errorf("bounty 2 answered at %v, after its expiration", o.At.Sub(now))
		}
		open()
		if o := r.next(); o.ID != "1" || o.Err != nil {
			t.Errorf("second outcome %+v, want bounty 1 answered", o)
		}
		if scans := r.scans(); len(scans) != 1 || scans[0] != "slow" {
			t.Errorf("scanned %q, want only bounty 1", scans)
		}
	})
}

// With the policy off, an expired bounty is not discarded: it goes through
// the pipeline, and its scan gets psengine.LateScanWindow since the
// expiration less the margin has passed.
func TestExpiredBountyNotDiscardedWhenPolicyOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		r := newRig(t, func(ctx context.Context, content string) error {
			if content == "slow" {
				<-gate
			}
			return nil
		}, []step{status(200)}, psengine.WithDiscardExpired(false), psengine.WithInFlight(1))
		now := time.Now()
		r.send("d-1", bountyJSON(t, "1", []byte("slow"), psenginetest.WithExpiration(now.Add(10*time.Minute))))
		r.send("d-2", bountyJSON(t, "2", []byte("MALWARE"), psenginetest.WithExpiration(now.Add(time.Minute))))
		time.Sleep(2 * time.Minute)
		close(gate)
		got := map[string]outcome{}
		for range 2 {
			o := r.next()
			got[o.ID] = o
		}
		// Expired in the queue, yet scanned (with psengine.LateScanWindow),
		// not discarded and not cut off at once.
		if o := got["2"]; errors.Is(o.Err, psengine.ErrExpired) || errors.Is(o.Err, psengine.ErrTimeout) ||
			(o.Err == nil && o.Analysis.Verdict != psengine.Malicious) {
			t.Errorf("bounty 2: %+v, want it scanned (malicious) despite its expiration", o)
		}
	})
}

// A scan's deadline is the expiration less the delivery margin: a scanner
// that does not finish is cut off then, and its unknown answer is delivered
// before the bounty expires.
func TestScanDeadlineLeavesDeliveryMargin(t *testing.T) {
	for _, tt := range []struct {
		name   string
		opts   []psengine.Option
		margin time.Duration
	}{
		{"default margin", nil, psengine.DefaultDeliveryMargin},
		{"20s margin", []psengine.Option{psengine.WithDeliveryMargin(20 * time.Second)}, 20 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				deadlines := make(chan time.Time, 1)
				r := newRig(t, func(ctx context.Context, _ string) error {
					d, _ := ctx.Deadline()
					deadlines <- d
					<-ctx.Done()
					return ctx.Err()
				}, []step{status(200)}, tt.opts...)
				exp := time.Now().Add(time.Minute)
				r.send("d-1", bountyJSON(t, "1", []byte("x"), psenginetest.WithResponseURL(responseURL),
					psenginetest.WithExpiration(exp)))
				o := r.next()
				if !errors.Is(o.Err, psengine.ErrTimeout) {
					t.Errorf("error %v, want ErrTimeout", o.Err)
				}
				if deadline, want := <-deadlines, exp.Add(-tt.margin); !deadline.Equal(want) {
					t.Errorf("scan deadline %v, want %v (expiration less %v)", deadline, want, tt.margin)
				}
				log := r.receiver.log()
				if len(log) != 1 || log[0].Status != 200 {
					t.Fatalf("attempts %+v, want one accepted answer", log)
				}
				if !log[0].At.Before(exp) || log[0].At.Before(exp.Add(-tt.margin)) {
					t.Errorf("answer at %v, want within [%v, %v)", log[0].At, exp.Add(-tt.margin), exp)
				}
				if a := decodeAnswer(t, log[0].Body); a.Verdict != "unknown" {
					t.Errorf("answer %s, want unknown", log[0].Body)
				}
			})
		})
	}
}
