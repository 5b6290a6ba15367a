package webhook

import (
	"sync"
	"time"
)

// dedupe remembers delivery ids for a time window, in bounded memory: at
// most size ids; when full, the oldest is forgotten first (so a flood of
// deliveries shortens the effective window rather than growing memory).
// Safe for concurrent use.
type dedupe struct {
	window time.Duration
	size   int

	mu    sync.Mutex
	ids   map[string]uint64 // id -> sequence number of its live entry
	queue []dedupeEntry     // in arrival order; queue[head:] is live
	head  int
	seq   uint64
}

type dedupeEntry struct {
	id  string
	seq uint64
	at  time.Time
}

func newDedupe(window time.Duration, size int) *dedupe {
	return &dedupe{window: window, size: size, ids: make(map[string]uint64)}
}

// claim records id as seen at now and returns true, unless id was already
// claimed within the window (then false: a repeat). A claim that did not
// lead to acceptance is given back with release.
func (d *dedupe) claim(id string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.evict(now)
	if _, ok := d.ids[id]; ok {
		return false
	}
	for len(d.queue)-d.head >= d.size {
		d.pop()
	}
	d.seq++
	d.ids[id] = d.seq
	d.queue = append(d.queue, dedupeEntry{id: id, seq: d.seq, at: now})
	return true
}

// release forgets a claim (the submission failed: a retry must be taken).
func (d *dedupe) release(id string) {
	d.mu.Lock()
	delete(d.ids, id)
	d.mu.Unlock()
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
	if d.ids[e.id] == e.seq { // not released and re-claimed since
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
