package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
)

// Shutdown drains through the webhook: bounties already accepted are
// scanned and answered, new ones are refused with 503 meanwhile.
func TestShutdownDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		r := newRig(t, func(ctx context.Context, _ string) error {
			select {
			case <-gate:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}, []step{status(200)}, psengine.WithWorkers(2))
		for i := range 5 {
			r.send(fmt.Sprint("d-", i), bountyJSON(t, fmt.Sprint(i), []byte("MALWARE"),
				psenginetest.WithResponseURL(responseURL), psenginetest.WithExpiration(time.Now().Add(time.Hour))))
		}
		synctest.Wait() // two scans running, three queued

		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			done <- r.shutdown(ctx)
		}()
		synctest.Wait()
		late := bountyJSON(t, "late", []byte("MALWARE"), psenginetest.WithResponseURL(responseURL))
		if got := serve(t, r.handler, signed("bounty", "d-late", late)); got.Code != 503 || got.RetryAfter == "" {
			t.Errorf("bounty during shutdown: %+v, want 503 with Retry-After", got)
		}
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v before the scans finished", err)
		default:
		}

		time.Sleep(time.Minute)
		close(gate)
		if err := <-done; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		var ids []string
		for range 5 {
			o := r.next()
			if o.Err != nil {
				t.Errorf("bounty %s: %v", o.ID, o.Err)
			}
			ids = append(ids, o.ID)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, []string{"0", "1", "2", "3", "4"}) {
			t.Errorf("answered %v, want 0-4", ids)
		}
		if n := len(r.receiver.accepted()); n != 5 {
			t.Errorf("%d answers delivered, want 5", n)
		}
		if got := serve(t, r.handler, signed("bounty", "d-later", late)); got.Code != 503 {
			t.Errorf("bounty after shutdown: %+v, want 503", got)
		}
		if got := serve(t, r.handler, httptest.NewRequest("GET", "/", nil)); got.Code != 200 {
			t.Errorf("liveness after shutdown: %+v, want 200", got)
		}
	})
}

// When Shutdown's deadline passes first, every bounty not answered is
// reported to the error hooks, by id.
func TestShutdownDeadlineReportsUnanswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, func(ctx context.Context, _ string) error {
			<-ctx.Done() // a scan that never finishes by itself
			return ctx.Err()
		}, []step{status(200)})
		for i := range 3 {
			r.send(fmt.Sprint("d-", i), bountyJSON(t, fmt.Sprint(i), []byte("x"),
				psenginetest.WithResponseURL(responseURL), psenginetest.WithExpiration(time.Now().Add(time.Hour))))
		}
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		if err := r.shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown: %v, want the deadline's error", err)
		}
		if d := time.Since(start); d != 30*time.Second {
			t.Errorf("Shutdown took %v, want its 30s deadline", d)
		}
		got := map[string]error{}
		for range 3 {
			o := r.next()
			if _, dup := got[o.ID]; dup {
				t.Errorf("bounty %s reported twice", o.ID)
			}
			got[o.ID] = o.Err
		}
		r.quiet(time.Hour)
		for _, id := range []string{"1", "2"} { // still queued
			if !errors.Is(got[id], psengine.ErrShutdown) {
				t.Errorf("queued bounty %s: %v, want ErrShutdown", id, got[id])
			}
		}
		if !errors.Is(got["0"], psengine.ErrShutdown) { // running: cut off, not answered
			t.Errorf("running bounty 0: %v, want ErrShutdown", got["0"])
		}
		if n := len(r.receiver.accepted()); n != 0 {
			t.Errorf("%d answers delivered, want none", n)
		}
	})
}
