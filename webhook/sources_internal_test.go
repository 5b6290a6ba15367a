package webhook

import (
	"net/netip"
	"testing"
)

func TestSourceOf(t *testing.T) {
	for _, tt := range []struct{ remote, want string }{
		{"192.0.2.7:1234", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:1234", "192.0.2.7"}, // an IPv4 client of a dual-stack listener
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::"},
		{"[2001:db8:1:2:ffff:ffff:ffff:ffff]:443", "2001:db8:1:2::"}, // the same /64
		{"[fe80::1%eth0]:80", "fe80::"},
	} {
		if got := sourceOf(tt.remote); got != netip.MustParseAddr(tt.want) {
			t.Errorf("sourceOf(%q) = %v, want %v", tt.remote, got, tt.want)
		}
	}
	for _, remote := range []string{"", "@", "pipe", "192.0.2.7"} {
		if got := sourceOf(remote); got.IsValid() {
			t.Errorf("sourceOf(%q) = %v, want the shared zero source", remote, got)
		}
	}
}

// An entry lives while its source has requests under way, and is reused.
func TestSourceLimitsForget(t *testing.T) {
	l := newSourceLimits(2)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	sa1, sa2, sb := l.enter(a), l.enter(a), l.enter(b)
	if sa1 != sa2 || sa1 == sb || len(l.m) != 2 {
		t.Fatalf("entries: a %p %p, b %p, map %d; want one per source", sa1, sa2, sb, len(l.m))
	}
	sa1.slots <- struct{}{}
	if n := l.reading(a); n != 1 {
		t.Errorf("reading(a) = %d, want 1", n)
	}
	<-sa1.slots
	l.leave(a, sa1)
	l.leave(a, sa2)
	l.leave(b, sb)
	if len(l.m) != 0 || len(l.free) != 2 {
		t.Errorf("after every request left: map %d, free %d; want 0 and 2", len(l.m), len(l.free))
	}
	if again := l.enter(b); again != sb && again != sa1 {
		t.Error("a new request does not reuse a free entry")
	}
}
