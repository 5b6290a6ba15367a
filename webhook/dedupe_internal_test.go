package webhook

import (
	"strconv"
	"testing"
	"testing/synctest"
	"time"
)

// take claims and confirms id, reporting whether it was new.
func take(d *dedupe, id string, now time.Time) bool {
	res, token := d.claim(id, now)
	if res == claimed {
		d.confirm(id, token)
	}
	return res == claimed
}

func TestDedupeWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDedupe(time.Minute, 100)
		if !take(d, "a", time.Now()) {
			t.Fatal("first claim refused")
		}
		time.Sleep(59 * time.Second)
		if res, _ := d.claim("a", time.Now()); res != repeated {
			t.Fatalf("repeat within the window: %v, want repeated", res)
		}
		time.Sleep(time.Second)
		if !take(d, "a", time.Now()) {
			t.Fatal("claim after the window refused")
		}
		if got := d.len(); got != 1 {
			t.Errorf("remembers %d ids, want 1", got)
		}
	})
}

func TestDedupeClaimLifecycle(t *testing.T) {
	d := newDedupe(time.Hour, 10)
	now := time.Now()
	res, token := d.claim("a", now)
	if res != claimed {
		t.Fatalf("first claim: %v", res)
	}
	if res, _ := d.claim("a", now); res != inFlight {
		t.Fatalf("claim while the first is being queued: %v, want inFlight", res)
	}
	d.release("a", token)
	res, token = d.claim("a", now)
	if res != claimed {
		t.Fatalf("claim after release: %v, want claimed", res)
	}
	d.confirm("a", token)
	if res, _ := d.claim("a", now); res != repeated {
		t.Fatalf("claim after confirm: %v, want repeated", res)
	}
	// A stale token does nothing.
	d.release("a", token-1)
	if res, _ := d.claim("a", now); res != repeated {
		t.Fatalf("stale release forgot the id")
	}
}

func TestDedupeStaleEntries(t *testing.T) {
	d := newDedupe(time.Hour, 2)
	now := time.Now()
	_, token := d.claim("a", now)
	d.release("a", token)
	if !take(d, "a", now) {
		t.Fatal("released id not claimable")
	}
	// Evicting the stale entry of the first claim must not forget the
	// second one.
	take(d, "b", now) // evicts the stale "a" entry only
	if res, _ := d.claim("a", now); res != repeated {
		t.Errorf("live id forgotten with a stale entry: %v", res)
	}
}

func TestDedupeBounded(t *testing.T) {
	const size = 100
	d := newDedupe(time.Hour, size)
	now := time.Now()
	for i := range 10_000 {
		if !take(d, strconv.Itoa(i), now) {
			t.Fatalf("fresh id %d refused", i)
		}
		if n := d.len(); n > size {
			t.Fatalf("remembers %d ids, want at most %d", n, size)
		}
		if n := len(d.queue) - d.head; n > size {
			t.Fatalf("queue holds %d entries, want at most %d", n, size)
		}
	}
	if cap(d.queue) > 4*1024 {
		t.Errorf("queue capacity grew to %d", cap(d.queue))
	}
	for i := 10_000 - size; i < 10_000; i++ {
		if res, _ := d.claim(strconv.Itoa(i), now); res != repeated {
			t.Fatalf("recent id %d forgotten", i)
		}
	}
	if !take(d, strconv.Itoa(10_000-size-1), now) {
		t.Error("oldest id still remembered past the size bound")
	}
}
