package psengine

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/polyswarm/psengine/internal/workerproc"
	"github.com/polyswarm/psengine/pipeline"
)

// ScanGrace is how long the engine waits, after a scan's context ended (its
// deadline passed, its caller gave up or Shutdown did), for the scan to
// return before it walks away from it: a bounty past its deadline is then
// answered unknown (ErrTimeout), delivered and reported to the hooks, one
// given up on is reported unanswered, and the worker goes on with its next
// bounty with a fresh worker Env (see WorkerSetup) while the scan that
// ignored its context finishes alone. It is never more than half the
// delivery margin, so that the answer still has time to reach PolySwarm.
const ScanGrace = time.Second

// worker is one scanning slot with its own Env. A worker is used by one
// goroutine at a time: the one that took it from Engine.slots.
type worker struct {
	id    int
	env   Env  // the worker's own Env, valid when ready
	base  *Env // the engine Env it was built on
	ready bool

	slot workerproc.Slot // with the process backend: the worker's child
}

// scanRunner is where scans run, one seam: in this process (inProcess) or
// in worker children (inChildren, the process backend). start runs once at
// the engine's start with its first generation, stop once at its end.
type scanRunner interface {
	local() bool // scans run in this process: a process death is a scan's
	start(ctx context.Context, gen *generation) error
	scan(ctx context.Context, w *worker, gen *generation, a Artifact) (Analysis, error)
	stop(ctx context.Context) []error
}

// inProcess is the scan runner of scans in this process: each worker has
// its own Env (WorkerSetup), and a scan runs on a goroutine of its own
// (see Engine.scan).
type inProcess struct{ e *Engine }

func (r inProcess) local() bool                              { return true }
func (r inProcess) start(context.Context, *generation) error { return nil }

func (r inProcess) scan(ctx context.Context, w *worker, gen *generation, a Artifact) (Analysis, error) {
	env, err := r.e.workerEnv(ctx, w, gen.env)
	if err != nil {
		return Analysis{}, err
	}
	return r.e.scan(ctx, w, *env, a, gen)
}

// stop tears the workers' Envs down (WorkerTeardown).
func (r inProcess) stop(ctx context.Context) []error {
	var errs []error
	for _, w := range r.e.workers {
		if !w.ready {
			continue
		}
		if err := r.e.teardownWorker(ctx, w.env); err != nil {
			errs = append(errs, fmt.Errorf("worker %d teardown: %w", w.id, err))
		}
	}
	return errs
}

// takeWorker takes a free worker, waiting for one until ctx ends (then it
// returns ctx's cause).
func (e *Engine) takeWorker(ctx context.Context) (*worker, error) {
	select {
	case w := <-e.slots: // a free worker: no need to watch ctx
		return w, nil
	default:
	}
	select {
	case w := <-e.slots:
		return w, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// giveWorker gives w back.
func (e *Engine) giveWorker(w *worker) { e.slots <- w }

// workerEnv sets w up on first use (and after a scan walked away from took
// its Env), and re-bases it on the engine's Env when an update replaced that.
func (e *Engine) workerEnv(ctx context.Context, w *worker, cur *Env) (*Env, error) {
	if w.ready {
		if w.base != cur { // Update swapped the engine's Env
			w.env, w.base = w.env.rebase(*w.base, *cur), cur
		}
		return &w.env, nil
	}
	env, err := e.setupWorker(ctx, *cur, w.id)
	if err != nil {
		return nil, err
	}
	w.env, w.base, w.ready = env, cur, true
	return &w.env, nil
}

// setupWorker makes a worker Env on env (WorkerSetup, if the scanner has
// it), with who naming the worker in its logs and in the error.
func (e *Engine) setupWorker(ctx context.Context, env Env, who any) (Env, error) {
	env = env.WithLogger(env.Logger().With("worker", who))
	s, ok := e.orig.(WorkerSetup)
	if !ok {
		return env, nil
	}
	var out Env
	if err := protect(func() (err error) { out, err = s.SetupWorker(ctx, env); return err }); err != nil {
		return Env{}, kind(ErrSetup, fmt.Errorf("worker %v setup: %w", who, err))
	}
	return out, nil
}

// teardownWorker tears a worker Env down (WorkerTeardown, if the scanner
// has it).
func (e *Engine) teardownWorker(ctx context.Context, env Env) error {
	t, ok := e.orig.(WorkerTeardown)
	if !ok {
		return nil
	}
	return protect(func() error { return t.TeardownWorker(ctx, env) })
}

// teardownAlone is teardownWorker with 30 seconds of its own, for an Env
// whose scan or child outlived whoever was waiting.
func (e *Engine) teardownAlone(env Env) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return e.teardownWorker(ctx, env)
}

// States of a scan, for the hand-over of its worker Env when the engine
// walks away from it.
const (
	scanRunning int32 = iota
	scanReturned
	scanAbandoned
)

// scan runs the scanner on a goroutine of its own (so that a panic or a
// runtime.Goexit in it cannot end the worker's) and returns its result, or,
// when the scan has not returned ScanGrace after ctx ended, an error
// wrapping pipeline.ErrAbandoned and ctx's cause. The worker then forgets
// its Env, which the abandoned scan may still be using: the scan tears it
// down (WorkerTeardown) when it returns, and the worker's next bounty sets
// up a new one.
func (e *Engine) scan(ctx context.Context, w *worker, env Env, a Artifact, gen *generation) (Analysis, error) {
	var state atomic.Int32
	out, err := pipeline.Bounded(e.grace(), func(ctx context.Context, a Artifact) (Analysis, error) {
		defer func() {
			if !state.CompareAndSwap(scanRunning, scanReturned) {
				e.retire(env)
				e.releaseEnv(gen)
			}
		}()
		return e.scanner.Scan(ctx, env, a)
	})(ctx, a)
	if errors.Is(err, pipeline.ErrAbandoned) {
		e.abandoned.Add(1)
		e.holdEnv(gen) // the abandoned scan still uses it
		if state.CompareAndSwap(scanRunning, scanAbandoned) {
			w.ready = false
		} else {
			e.abandoned.Add(-1) // it returned just now: its Env is free again
			e.releaseEnv(gen)
		}
		err = fmt.Errorf("%w: the scan did not return %v after its context ended (%w)", pipeline.ErrAbandoned, e.grace(), context.Cause(ctx))
	}
	return out, err
}

// retire tears down the worker Env of a scan the engine walked away from,
// once that scan returned.
func (e *Engine) retire(env Env) {
	defer e.abandoned.Add(-1)
	log := e.cfg.logger
	log.Warn("a scan returned after the engine walked away from it; its result is dropped")
	if err := e.teardownAlone(env); err != nil {
		log.Error("worker teardown after an abandoned scan", "err", err)
	}
}

// grace is ScanGrace, at most half the delivery margin.
func (e *Engine) grace() time.Duration { return min(ScanGrace, e.cfg.margin/2) }
