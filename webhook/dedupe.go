package webhook

import (
	"sync"
	"time"
)

// dedupe remembers delivery ids for a time window, in bounded memory: at
// most size ids; when full, the oldest is forgotten first (so a flood of
// deliveries shortens the effective window rather than growing memory).
// Safe for concurrent use.
//
// A delivery is claimed before it is queued and confirmed once the queue
// took it (or released if it did not), so a repeat that arrives meanwhile
// is told to retry rather than acknowledged for a bounty that may yet be
// refused.
type dedupe struct {
	window time.Duration
	size   int

	mu    sync.Mutex
	ids   map[string]claimState // id -> its live entry
	queue []dedupeEntry         // in arrival order; queue[head:] is live
	head  int
	seq   uint64
}

type claimState struct {
	seq  uint64
	done bool // confirmed: the bounty was queued
}

type dedupeEntry struct {
	id  string
	seq uint64
	at  time.Time
}

// claimResult says what claim found.
type claimResult int

const (
	claimed  claimResult = iota // new: the caller queues it, then confirms or releases
	repeated                    // queued before, within the window
	inFlight                    // being queued by another request right now
)

func newDedupe(window time.Duration, size int) *dedupe {
	return &dedupe{window: window, size: size, ids: make(map[string]claimState)}
}

// claim records id as seen at now, unless it was seen within the window.
// When it returns claimed, token identifies the claim for confirm or
// release.
func (d *dedupe) claim(id string, now time.Time) (res claimResult, token uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.evict(now)
	if st, ok := d.ids[id]; ok {
		if st.done {
			return repeated, 0
		}
		return inFlight, 0
	}
	for len(d.queue)-d.head >= d.size {
		d.pop()
	}
	d.seq++
	d.ids[id] = claimState{seq: d.seq}
	d.queue = append(d.queue, dedupeEntry{id: id, seq: d.seq, at: now})
	return claimed, d.seq
}

// confirm marks a claim as queued: repeats are acknowledged from now on.
func (d *dedupe) confirm(id string, token uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if st, ok := d.ids[id]; ok && st.seq == token {
		d.ids[id] = claimState{seq: token, done: true}
	}
}

// release forgets a claim (the queue refused it: a retry must be taken).
func (d *dedupe) release(id string, token uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if st, ok := d.ids[id]; ok && st.seq == token {
		delete(d.ids, id)
	}
}

// len returns how many ids are remembered.
func (d *dedupe) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.ids)
}

// evict forgets the entries older than the window. Callers hold d.mu.
func (d *dedupe) evict(now time.Time) {
	for d.head < len(d.queue) && now.Sub(d.queue[d.head].at) >= d.window {
		d.pop()
	}
}

// pop forgets the oldest entry. Callers hold d.mu.
func (d *dedupe) pop() {
	e := d.queue[d.head]
	if d.ids[e.id].seq == e.seq { // not released and re-claimed since
		delete(d.ids, e.id)
	}
	d.queue[d.head] = dedupeEntry{}
	d.head++
	switch {
	case d.head == len(d.queue):
		d.queue, d.head = d.queue[:0], 0
	case d.head >= 1024 && d.head*2 >= len(d.queue):
		n := copy(d.queue, d.queue[d.head:])
		clear(d.queue[n:])
		d.queue, d.head = d.queue[:n], 0
	}
}
