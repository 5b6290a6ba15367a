package localq

import (
	"sync"

	bolt "go.etcd.io/bbolt"
)

// maxGroup bounds the writes committed in one transaction.
const maxGroup = 1024

// groupCommit commits writes to a bbolt store as a group commit does: a
// write arriving while no commit runs is committed at once, alone; writes
// arriving while one runs wait for it and are then committed together, in
// one transaction and one sync. So a lone write waits for one sync and no
// timer, and under load each sync carries as many writes as arrived during
// the previous one. (bbolt's DB.Batch waits a fixed delay for company
// instead: too long for a lone Submit's 202, too short to share a sync
// under load.)
type groupCommit struct {
	db *bolt.DB

	mu      sync.Mutex
	queued  []*groupWrite
	running bool // a goroutine commits the queued writes
}

type groupWrite struct {
	fn   func(tx *bolt.Tx) error
	done chan error
}

// commit runs fn in a read-write transaction shared with the writes
// queued beside it, and returns once that transaction is committed and
// synced: fn's error, or the commit's. fn may run more than once: when a
// write of the group fails, each write of the group is committed alone,
// so that one failing write costs only itself.
func (g *groupCommit) commit(fn func(tx *bolt.Tx) error) error {
	w := &groupWrite{fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	g.queued = append(g.queued, w)
	if !g.running {
		g.running = true
		go g.run()
	}
	g.mu.Unlock()
	return <-w.done
}

// run commits the queued writes, group after group, until none is left.
func (g *groupCommit) run() {
	for {
		g.mu.Lock()
		n := min(len(g.queued), maxGroup)
		if n == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		group := g.queued[:n:n]
		g.queued = g.queued[n:]
		g.mu.Unlock()
		g.commitGroup(group)
	}
}

func (g *groupCommit) commitGroup(group []*groupWrite) {
	err := g.db.Update(func(tx *bolt.Tx) error {
		for _, w := range group {
			if err := w.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(group) == 1 {
		for _, w := range group {
			w.done <- err
		}
		return
	}
	for _, w := range group {
		w.done <- g.db.Update(w.fn)
	}
}
