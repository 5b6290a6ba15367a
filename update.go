package psengine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/polyswarm/psengine/internal/workerproc"
)

// SelfTester checks an Env before it serves: the engine calls it with the
// candidate an Updater returned (for instance: the EICAR sample must still
// be detected). An error drops the candidate; the last good Env keeps
// serving.
type SelfTester interface {
	SelfTest(ctx context.Context, env Env) error
}

// Releaser releases what an Env holds (compiled rules in a temp file, a
// loaded database) once the engine no longer uses it: an Env an update
// replaced, when the last bounty that used it has ended, and a candidate
// that failed its checks. The Env the engine ends with is EngineTeardown's.
type Releaser interface {
	Release(ctx context.Context, env Env) error
}

// HealthChecker says whether the scanner can scan now: its daemon answers,
// its rules are loaded, its Wine prefix is usable. Engine.Ready asks it.
// Bounties are scanned (and answered unknown if they fail) whatever it says.
type HealthChecker interface {
	CheckHealth(ctx context.Context, env Env) error
}

// ErrUnchanged is what an Updater returns (wrapped or not) when it found
// nothing new: the engine keeps its definitions, swaps nothing, and counts
// no update (psengine_updates_total{result="unchanged"}); Update returns an
// error wrapping it.
var ErrUnchanged = errors.New("psengine: definitions unchanged")

// ErrNotReady is wrapped by the error Ready returns when the engine is not
// ready to answer bounties.
var ErrNotReady = errors.New("psengine: not ready")

// Ready reports whether the engine can answer bounties now: nil once it has
// started, while it is not shutting down, and while its scanner, if it is a
// HealthChecker, says it is healthy. Otherwise the error wraps ErrNotReady
// and says why. It does not start the engine.
func (e *Engine) Ready(ctx context.Context) error {
	switch {
	case e.intake.Err() != nil:
		return fmt.Errorf("%w: shutting down", ErrNotReady)
	case !e.started.Load():
		return fmt.Errorf("%w: not started", ErrNotReady)
	case e.startErr != nil:
		return fmt.Errorf("%w: %w", ErrNotReady, e.startErr)
	}
	if h, ok := e.orig.(HealthChecker); ok {
		if err := protect(func() error { return h.CheckHealth(ctx, e.Env()) }); err != nil {
			return fmt.Errorf("%w: the scanner is not healthy: %w", ErrNotReady, err)
		}
	}
	return nil
}

// generation is one Env the engine serves with: the one Start built, then
// each that an Update swapped in. It is released once it was replaced and
// the last bounty that used it ended.
//
// refs counts the bounties using it plus one while it is the current
// generation; whoever brings it to zero (the swap that replaced it, or the
// last bounty to end) releases it. One atomic decrement decides, so a
// generation is released exactly once and never while a bounty uses it.
type generation struct {
	env   *Env
	child *workerproc.Generation // how children are set up with it (process backend)
	refs  atomic.Int64
}

// newGeneration makes the generation of env, ready for children when the
// scans run in them.
func (e *Engine) newGeneration(env *Env) (*generation, error) {
	g := &generation{env: env}
	if !e.runner.local() {
		var err error
		if g.child, err = e.childGeneration(env); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// envs holds the current generation.
type envs struct {
	mu      sync.Mutex // guards current, and taking a reference on it
	current *generation
	update  sync.Mutex     // one update at a time
	release sync.WaitGroup // releases under way
}

// currentIs reports whether g is the current generation.
func (v *envs) currentIs(g *generation) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.current == g
}

// setEnv makes g the current generation (at Start, and by Update) and
// drops the replaced generation's own reference: it returns that
// generation when this left it unused (the caller releases it), else nil
// (its last bounty releases it).
func (e *Engine) setEnv(g *generation) (unused *generation) {
	g.refs.Store(1)
	e.envs.mu.Lock()
	old := e.envs.current
	e.envs.current = g
	e.env.Store(g.env)
	e.envs.mu.Unlock()
	if old != nil && old.refs.Add(-1) == 0 {
		return old
	}
	return nil
}

// acquireEnv returns the current generation, counting one more bounty
// using it; releaseEnv ends that.
func (e *Engine) acquireEnv() *generation {
	e.envs.mu.Lock()
	defer e.envs.mu.Unlock()
	g := e.envs.current
	g.refs.Add(1)
	return g
}

// holdEnv counts one more use of g, a generation already in use.
func (e *Engine) holdEnv(g *generation) { g.refs.Add(1) }

// releaseEnv ends one use of g, releasing g when that was its last and an
// update replaced it.
func (e *Engine) releaseEnv(g *generation) {
	if g.refs.Add(-1) == 0 {
		e.retireEnv(g.env, "replaced by an update")
	}
}

// retireEnv releases env (Releaser) in the background.
func (e *Engine) retireEnv(env *Env, why string) {
	r, ok := e.orig.(Releaser)
	if !ok {
		return
	}
	e.envs.release.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := protect(func() error { return r.Release(ctx, *env) }); err != nil {
			e.cfg.logger.ErrorContext(ctx, "releasing an Env", "why", why, "err", err)
		}
	})
}

// Update asks the scanner (an Updater) for new definitions: a candidate
// Env. The engine refreshes the head from it (Describer), checks it
// (SelfTester) and, when both succeed, swaps it in atomically: bounties
// already running finish with the old Env, which is released (Releaser)
// when the last of them ends; each worker moves to the new one with its
// next bounty (with the process backend, children are replaced after their
// current scan); answers carry the head, signatures_version included, of
// the Env that scanned them. A candidate that fails is released, and the
// last good Env keeps serving: the error says why. An Updater that finds
// nothing new returns ErrUnchanged: nothing is swapped, and Update returns
// an error wrapping it. Updates are counted (psengine_updates_total, by
// result: ok, failed, unchanged) and logged. Without an Updater, Update
// does nothing. Concurrent calls run one after the other.
func (e *Engine) Update(ctx context.Context) (err error) {
	u, ok := e.orig.(Updater)
	if !ok {
		return nil
	}
	if err := e.Start(ctx); err != nil {
		return err
	}
	e.envs.update.Lock()
	defer e.envs.update.Unlock()
	log := e.cfg.logger
	defer func() {
		result := "ok"
		switch {
		case errors.Is(err, ErrUnchanged):
			result = "unchanged"
			log.DebugContext(ctx, "definitions unchanged", "signatures_version", e.Env().head.Scanner.SignaturesVersion)
		case err != nil:
			result = "failed"
			log.ErrorContext(ctx, "definitions update failed; the last good definitions keep serving", "err", err)
		}
		e.tel.Updated(ctx, result)
	}()
	cur := e.Env()
	var next Env
	if err = protect(func() (err error) { next, err = u.Update(ctx, cur); return err }); err != nil {
		return fmt.Errorf("psengine: update: %w", err)
	}
	next.name, next.logger = cur.name, cur.logger
	next.vals = next.vals.compact() // drop the values the update replaced, for the GC
	if next.head, err = e.head(ctx, next); err != nil {
		e.retireEnv(&next, "a failed update")
		return fmt.Errorf("psengine: update: the candidate's head: %w", err)
	}
	if t, ok := e.orig.(SelfTester); ok {
		if err = protect(func() error { return t.SelfTest(ctx, next) }); err != nil {
			e.retireEnv(&next, "a failed update")
			return fmt.Errorf("psengine: update: the candidate failed its self-test: %w", err)
		}
	}
	// The host's checks (WithSelfTest, selftest.go).
	if err = e.hostSelfTests(ctx, next); err != nil {
		e.retireEnv(&next, "a failed update")
		return fmt.Errorf("psengine: update: the candidate failed the host's self-test: %w", err)
	}
	gen, err := e.newGeneration(&next)
	if err != nil {
		e.retireEnv(&next, "a failed update")
		return fmt.Errorf("psengine: update: %w", err)
	}
	if old := e.setEnv(gen); old != nil {
		e.retireEnv(old.env, "replaced by an update")
	}
	e.retainResults(ctx, &cur, next) // cache.go
	log.InfoContext(ctx, "definitions updated", "signatures_version", next.head.Scanner.SignaturesVersion,
		"was", cur.head.Scanner.SignaturesVersion, "vendor_version", next.head.Scanner.VendorVersion)
	return nil
}

// head gathers the engine's head for env: the options' metadata, the
// scanner's Describe, the defaults.
func (e *Engine) head(ctx context.Context, env Env) (Metadata, error) {
	head := e.cfg.meta
	if d, ok := e.orig.(Describer); ok {
		var m Metadata
		if err := protect(func() (err error) { m, err = d.Describe(ctx, env); return err }); err != nil {
			return Metadata{}, err
		}
		head = head.Merge(m)
	}
	return head.Merge(Metadata{
		Product: ProductName(e.cfg.name),
		Scanner: ScannerInfo{Environment: e.defaultEnvironment()},
	}), nil
}
