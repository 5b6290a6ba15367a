package localq

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestGroupCommit: writes queued while a commit runs are committed together
// after it, in one transaction; a failing write of a group fails alone,
// and every other write of the group is committed.
func TestGroupCommit(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	g := &groupCommit{db: db}
	bucket := []byte("b")
	if err := g.commit(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(bucket); return err }); err != nil {
		t.Fatal(err)
	}

	// The first write holds its transaction until the others are queued.
	const n = 50
	queued := make(chan struct{})
	var transactions sync.Map // *bolt.Tx -> true: the transactions writes ran in
	first := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		first <- g.commit(func(tx *bolt.Tx) error {
			close(started)
			<-queued
			return tx.Bucket(bucket).Put([]byte("first"), []byte("1"))
		})
	}()
	<-started
	fail := errors.New("this write fails")
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = g.commit(func(tx *bolt.Tx) error {
				transactions.Store(tx, true)
				if i == 7 {
					return fail
				}
				return tx.Bucket(bucket).Put(fmt.Appendf(nil, "k%02d", i), []byte("v"))
			})
		})
	}
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.queued) == n })
	close(queued)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if i == 7 && !errors.Is(err, fail) || i != 7 && err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	// The group ran once together (then, as one write failed, each alone).
	var txs int
	transactions.Range(func(any, any) bool { txs++; return true })
	if want := 1 + n; txs != want {
		t.Errorf("the queued writes ran in %d transactions, want %d (one group, then each alone)", txs, want)
	}
	_ = db.View(func(tx *bolt.Tx) error {
		if got, want := tx.Bucket(bucket).Stats().KeyN, n; got != want { // n-1 writes and "first"
			t.Errorf("%d keys committed, want %d", got, want)
		}
		return nil
	})

	// Without failures, the queued writes share one transaction.
	transactions.Clear()
	queued = make(chan struct{})
	started = make(chan struct{})
	go func() { first <- g.commit(func(*bolt.Tx) error { close(started); <-queued; return nil }) }()
	<-started
	for i := range n {
		wg.Go(func() {
			errs[i] = g.commit(func(tx *bolt.Tx) error {
				transactions.Store(tx, true)
				return tx.Bucket(bucket).Put(fmt.Appendf(nil, "m%02d", i), []byte("v"))
			})
		})
	}
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.queued) == n })
	close(queued)
	wg.Wait()
	<-first
	txs = 0
	transactions.Range(func(any, any) bool { txs++; return true })
	if txs != 1 {
		t.Errorf("%d queued writes ran in %d transactions, want 1", n, txs)
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return !g.running })
}

// waitFor waits until cond holds, yielding to the goroutines it waits on.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for give := time.Now().Add(time.Minute); !cond(); runtime.Gosched() {
		if time.Now().After(give) {
			t.Fatal("gave up waiting")
		}
	}
}
