package psengine

import (
	"context"
	"errors"
	"sync"
)

// CandidateScan scans one artifact with the candidate Env of an update, as
// a bounty's scan would: the scanner (in the middleware), with a worker Env
// set up on the candidate (WorkerSetup, on first use); an artifact the
// scanner does not accept (Acceptor) is answered Unsupported without a
// scan. It returns the scanner's analysis and error as they are (no bid, no
// head). Calls are served one at a time, in the engine's own process
// (with the process backend too); a panic in the scan is returned as a
// *PanicError. The scan must honour ctx.
type CandidateScan func(ctx context.Context, a Artifact) (Analysis, error)

// SelfTest is a host's check of the candidate Env an update brings (see
// WithSelfTest). scan scans with the candidate (never with the Env
// serving); candidate is that Env, for its head (Head) and logger. An
// error refuses the candidate.
type SelfTest func(ctx context.Context, candidate Env, scan CandidateScan) error

// WithSelfTest adds a host check of every candidate Env an update brings:
// Update runs it after the scanner's own (SelfTester), and a candidate it
// refuses is released while the last good Env keeps serving; Update's
// error wraps the check's (for instance, package selftest's corpus names
// the files whose expected verdict the candidate lost). Checks run in the
// order given, each with the Update's ctx.
func WithSelfTest(t SelfTest) Option {
	if t == nil {
		panic("psengine: WithSelfTest(nil)")
	}
	return opt("WithSelfTest(...)", func(c *config) { c.selfTests = append(c.selfTests, t) })
}

// SelfTest runs the WithSelfTest checks on the Env serving now (starting
// the engine first), as Update runs them on a candidate: to learn whether
// the definitions in use pass them (at start; after an update that found
// nothing new). It returns nil without checks. The Env is held until the
// checks end (an update meanwhile does not release it).
func (e *Engine) SelfTest(ctx context.Context) error {
	if err := e.Start(ctx); err != nil {
		return err
	}
	g := e.acquireEnv()
	defer e.releaseEnv(g)
	return e.hostSelfTests(ctx, *g.env)
}

// hostSelfTests runs the WithSelfTest checks on candidate.
func (e *Engine) hostSelfTests(ctx context.Context, candidate Env) error {
	if len(e.cfg.selfTests) == 0 {
		return nil
	}
	c := &candidateScanner{e: e, env: candidate}
	defer c.teardown(ctx)
	for _, t := range e.cfg.selfTests {
		if err := protect(func() error { return t(ctx, candidate, c.scan) }); err != nil {
			return err
		}
	}
	return nil
}

// candidateScanner scans with a candidate Env on a worker Env of its own.
type candidateScanner struct {
	e   *Engine
	env Env

	mu       sync.Mutex
	worker   Env
	ready    bool
	setupErr error
	closed   bool // the check is over: scan refuses
}

func (c *candidateScanner) scan(ctx context.Context, a Artifact) (out Analysis, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return Analysis{}, errors.New("psengine: a CandidateScan used after its self-test returned")
	}
	if acc, ok := c.e.orig.(Acceptor); ok && !acc.Accepts(a) {
		return Unsupported(), nil
	}
	if !c.ready && c.setupErr == nil {
		c.worker, c.setupErr = c.e.setupWorker(ctx, c.env, "self-test")
		c.ready = c.setupErr == nil
	}
	if c.setupErr != nil {
		return Analysis{}, c.setupErr
	}
	err = protect(func() (err error) { out, err = c.e.scanner.Scan(ctx, c.worker, a); return err })
	return out, err
}

// teardown tears the worker Env down (WorkerTeardown), if it was set up.
func (c *candidateScanner) teardown(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if !c.ready {
		return
	}
	c.ready = false
	if err := c.e.teardownWorker(context.WithoutCancel(ctx), c.worker); err != nil && !errors.Is(err, context.Canceled) {
		c.e.cfg.logger.ErrorContext(ctx, "the self-test's worker teardown", "err", err)
	}
}
