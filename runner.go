package psengine

import (
	"context"
	"fmt"

	"github.com/polyswarm/psengine/pipeline"
)

// scanRunner is a worker's long-lived scanning goroutine, used with
// WithScanIsolation (by default scans run on the worker's goroutine). Reusing it saves
// starting a goroutine, and growing its stack, for every scan, while the
// worker can still walk away from a scan that outlives its deadline: the
// runner is then abandoned (it finishes that scan and exits) and the worker
// starts a new one for its next scan.
type scanRunner struct {
	in chan scanCall
}

type scanCall struct {
	ctx context.Context
	fn  func(context.Context) (Analysis, error)
	out chan scanResult // buffered: the runner never blocks on an abandoned call
}

type scanResult struct {
	a    Analysis
	err  error
	died bool // the scan called runtime.Goexit: the runner is gone
}

func newScanRunner() *scanRunner {
	r := &scanRunner{in: make(chan scanCall)}
	go r.loop()
	return r
}

func (r *scanRunner) loop() {
	for c := range r.in {
		if !r.run(c) {
			return
		}
	}
}

// run calls c.fn with panics recovered; it reports false when c.fn called
// runtime.Goexit (this goroutine is then ending).
func (r *scanRunner) run(c scanCall) (alive bool) {
	defer func() {
		if !alive {
			c.out <- scanResult{err: pipeline.ErrGoexit, died: true}
		}
	}()
	var res scanResult
	if perr := pipeline.Protect(func() { res.a, res.err = c.fn(c.ctx) }); perr != nil {
		res.err = perr
	}
	c.out <- res
	return true
}

// stop lets the runner end once its current scan (if any) returns.
func (r *scanRunner) stop() { close(r.in) }

// scan runs fn on w's runner and returns its result, or, as soon as ctx
// ends first, an error wrapping pipeline.ErrAbandoned and ctx's cause (the
// scan goes on in the background until it returns; its result is dropped).
// Only the goroutine holding w calls it.
func (w *worker) scan(ctx context.Context, fn func(context.Context) (Analysis, error)) (Analysis, error) {
	if ctx.Err() != nil {
		return Analysis{}, context.Cause(ctx)
	}
	if w.runner == nil {
		w.runner = newScanRunner()
	}
	call := scanCall{ctx: ctx, fn: fn, out: make(chan scanResult, 1)}
	w.runner.in <- call
	select {
	case res := <-call.out:
		if res.died {
			w.runner = nil
		}
		return res.a, res.err
	case <-ctx.Done():
		select {
		case res := <-call.out: // finished at the same moment: keep it
			if res.died {
				w.runner = nil
			}
			return res.a, res.err
		default:
		}
		w.runner.stop()
		w.runner = nil
		return Analysis{}, fmt.Errorf("%w: %w", pipeline.ErrAbandoned, context.Cause(ctx))
	}
}

// stopRunner ends w's runner, if any (at shutdown, when w is idle).
func (w *worker) stopRunner() {
	if w.runner != nil {
		w.runner.stop()
		w.runner = nil
	}
}
