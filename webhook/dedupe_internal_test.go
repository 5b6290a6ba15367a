package webhook

import (
	"strconv"
	"testing"
	"testing/synctest"
	"time"
)

func TestDedupeWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDedupe(time.Minute, 100)
		if !d.claim("a", time.Now()) {
			t.Fatal("first claim refused")
		}
		time.Sleep(59 * time.Second)
		if d.claim("a", time.Now()) {
			t.Fatal("repeat within the window claimed")
		}
		time.Sleep(time.Second)
		if !d.claim("a", time.Now()) {
			t.Fatal("claim after the window refused")
		}
		if got := d.len(); got != 1 {
			t.Errorf("remembers %d ids, want 1", got)
		}
	})
}

func TestDedupeRelease(t *testing.T) {
	d := newDedupe(time.Hour, 2)
	now := time.Now()
	d.claim("a", now)
	d.release("a")
	if !d.claim("a", now) {
		t.Fatal("released id not claimable")
	}
	// The stale entry of the first claim must not forget the second one
	// when it is evicted.
	d.claim("b", now)
	d.claim("c", now) // evicts the stale "a" entry, then the live "a"
	if d.claim("c", now) || d.claim("b", now) {
		t.Error("recent ids forgotten")
	}
}

func TestDedupeBounded(t *testing.T) {
	const size = 100
	d := newDedupe(time.Hour, size)
	now := time.Now()
	for i := range 10_000 {
		if !d.claim(strconv.Itoa(i), now) {
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
		if d.claim(strconv.Itoa(i), now) {
			t.Fatalf("recent id %d forgotten", i)
		}
	}
	if !d.claim(strconv.Itoa(10_000-size-1), now) {
		t.Error("oldest id still remembered past the size bound")
	}
}
