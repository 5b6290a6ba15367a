package webhook

import (
	"net/netip"
	"sync"
)

// sourceOf is the source a request counts against for the per-source read
// limit: its IPv4 address, or the /64 prefix of its IPv6 address (one site's
// share of addresses: a single host can use any address of its /64). A
// RemoteAddr that is not an IP and port (a Unix socket, a made-up address)
// is the zero Addr: such requests share one source.
func sourceOf(remoteAddr string) netip.Addr {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	a := ap.Addr().Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64) // cannot fail for an IPv6 address without a zone
		return p.Addr()
	}
	return a
}

// sourceLimits hands each source up to per slots to read bodies with. An
// entry lives while requests of its source hold or wait for its slots, so
// the map holds no more entries than there are requests under way.
type sourceLimits struct {
	per  int
	mu   sync.Mutex
	m    map[netip.Addr]*sourceSlots
	free []*sourceSlots // entries no source uses, their slots all free
}

type sourceSlots struct {
	slots chan struct{} // a token per body being read
	users int           // requests holding or waiting for a slot; guarded by sourceLimits.mu
}

// maxFreeSources bounds the entries kept for reuse.
const maxFreeSources = 64

func newSourceLimits(per int) *sourceLimits {
	return &sourceLimits{per: per, m: make(map[netip.Addr]*sourceSlots)}
}

// enter returns src's entry, counting the caller among its users until it
// calls leave.
func (l *sourceLimits) enter(src netip.Addr) *sourceSlots {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.m[src]
	if s == nil {
		if n := len(l.free); n > 0 {
			s, l.free = l.free[n-1], l.free[:n-1]
		} else {
			s = &sourceSlots{slots: make(chan struct{}, l.per)}
		}
		l.m[src] = s
	}
	s.users++
	return s
}

// leave undoes enter; the caller has given back any slot it took.
func (l *sourceLimits) leave(src netip.Addr, s *sourceSlots) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.users--; s.users > 0 {
		return
	}
	delete(l.m, src)
	if len(l.free) < maxFreeSources {
		l.free = append(l.free, s)
	}
}

// reading returns how many bodies src is reading now.
func (l *sourceLimits) reading(src netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.m[src]; s != nil {
		return len(s.slots)
	}
	return 0
}
