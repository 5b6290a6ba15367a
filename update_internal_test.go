package psengine

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var generationID = NewKey[int]("test.generation")

// releaseCounter counts the releases of each generation (by its id).
type releaseCounter struct {
	ScannerFunc
	mu       sync.Mutex
	released map[int]int
}

func (c *releaseCounter) Release(_ context.Context, env Env) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.released[generationID.Must(env)]++
	return nil
}

// A generation replaced while bounties use it is released once, by
// whichever lets go of it last: the swap or its last bounty. The swap used
// to read the use count after unlocking, so a bounty ending at that moment
// released the generation too. Bounties end here as fast as they can while
// generations are swapped, for a second: on the code with that bug, a
// generation was released twice in about one run in three on a busy
// 2-core machine, without -race (a race's window cannot be forced open).
func TestGenerationReleasedOnce(t *testing.T) {
	c := &releaseCounter{released: map[int]int{}}
	e := New(c)
	first := generationID.With(Env{}, 0)
	e.setEnv(&generation{env: &first})
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 2 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for !stop.Load() {
				g := e.acquireEnv()
				runtime.Gosched()
				e.releaseEnv(g)
			}
		})
	}
	swaps := 0
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); swaps++ {
		env := generationID.With(Env{}, swaps+1)
		if old := e.setEnv(&generation{env: &env}); old != nil {
			e.retireEnv(old.env, "replaced")
		}
	}
	stop.Store(true)
	wg.Wait()
	e.envs.release.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range swaps { // every generation but the current one
		if n := c.released[id]; n != 1 {
			t.Errorf("generation %d released %d times, want once", id, n)
		}
	}
	if n := c.released[swaps]; n != 0 {
		t.Errorf("the current generation released %d times", n)
	}
}
