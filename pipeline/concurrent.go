package pipeline

import (
	"context"
	"errors"
	"iter"

	"github.com/sourcegraph/conc/pool"
	"golang.org/x/sync/errgroup"
)

// ErrStopped is the context cause seen by the stages of a [Stream] whose
// consumer stopped iterating early.
var ErrStopped = errors.New("pipeline: stream consumer stopped")

// MapAll runs s on every input, at most limit at a time (limit <= 0 means 1),
// and returns when all have finished. outs[i] and errs[i] belong to ins[i]; both
// slices always have len(ins) elements, errs[i] being nil on success.
//
// One failure does not cancel the others. An input not yet started when ctx
// ends is not run: its error is context.Cause(ctx). Panics in s become
// [*PanicError]s.
func MapAll[In, Out any](ctx context.Context, limit int, ins []In, s Stage[In, Out]) ([]Out, []error) {
	outs := make([]Out, len(ins))
	errs := make([]error, len(ins))
	var g errgroup.Group
	g.SetLimit(max(limit, 1))
	for i, in := range ins {
		if ctx.Err() != nil {
			errs[i] = context.Cause(ctx)
			continue
		}
		g.Go(func() error {
			if ctx.Err() != nil {
				errs[i] = context.Cause(ctx)
				return nil
			}
			call(ctx, s, in, &outs[i], &errs[i])
			return nil
		})
	}
	_ = g.Wait() // the functions never fail
	return outs, errs
}

// Map runs s on every input, at most limit at a time (limit <= 0 means 1), and
// returns the outputs in input order, or the first error.
//
// The first error cancels the context of the other stages, with that error as
// context.Cause, and stops starting new ones; Map waits for the running ones
// and returns it with nil outputs. When ctx ends before every input was
// started, Map returns context.Cause(ctx) unless a stage failed first. Panics
// in s become [*PanicError]s.
func Map[In, Out any](ctx context.Context, limit int, ins []In, s Stage[In, Out]) ([]Out, error) {
	outs := make([]Out, len(ins))
	finished := make([]bool, len(ins)) // false after Wait: s called runtime.Goexit
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(limit, 1))
	started := 0
	for i, in := range ins {
		if gctx.Err() != nil {
			break
		}
		started++
		g.Go(func() error {
			if gctx.Err() != nil {
				finished[i] = true
				return context.Cause(gctx)
			}
			var err error
			call(gctx, s, in, &outs[i], &err)
			finished[i] = true // not reached on runtime.Goexit
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, ok := range finished[:started] {
		if !ok {
			return nil, ErrGoexit
		}
	}
	if started < len(ins) {
		return nil, context.Cause(ctx)
	}
	return outs, nil
}

// Stream returns an iterator that runs s on each value of ins, at most limit
// at a time (limit <= 0 means 1), and yields the results in input order: each
// as soon as it is ready and every earlier one was yielded.
//
// At most limit inputs are started and not yet yielded at any time, so a slow
// consumer holds back reading ins: nothing is read ahead beyond that (plus the
// one value waiting for a slot). With limit > 1, ins is read in a goroutine
// Stream starts and the stages run on a pool of at most limit goroutines
// (github.com/sourcegraph/conc/pool), reused from item to item. With limit 1
// nothing runs concurrently, so Stream starts no goroutine: it reads ins
// (through iter.Pull) and runs s on the consumer's goroutine, item after
// item, as a plain loop would (a runtime.Goexit in s then ends the
// consumer's goroutine, as it would in a loop).
//
// When ctx ends, no further input is started: the results of the started
// ones are yielded, then, if ins had another value, one (zero,
// context.Cause(ctx)) pair, and the iteration ends. When the consumer stops
// early (break), the context of the running stages is cancelled with cause
// [ErrStopped] and the iteration waits for them and for ins to return before
// it does: no goroutine is left behind. An ins that blocks must therefore
// itself end when ctx ends. A panic in s becomes a [*PanicError] result; a
// panic in ins becomes a final [*PanicError] result.
//
// Each iteration of the returned sequence starts over, reading ins again.
func Stream[In, Out any](ctx context.Context, limit int, ins iter.Seq[In], s Stage[In, Out]) iter.Seq2[Out, error] {
	if limit <= 1 {
		return sequential(ctx, ins, s)
	}
	type result struct {
		out  Out
		err  error
		done chan struct{}
		slot bool // holds a slot until yielded
	}
	closed := make(chan struct{})
	close(closed)
	return func(yield func(Out, error) bool) {
		ctx, cancel := context.WithCancelCause(ctx)
		workers := pool.New().WithMaxGoroutines(limit)
		slots := make(chan struct{}, limit)
		// At most limit slot holders plus one final result: sends never block.
		queue := make(chan *result, limit+1)
		fed := make(chan struct{})
		defer func() {
			cancel(ErrStopped)
			for range queue { // let the feeder finish
			}
			<-fed
			workers.Wait()
		}()
		go func() {
			defer close(fed)
			defer close(queue)
			final := func(err error) { queue <- &result{err: err, done: closed} }
			defer func() {
				if v := recover(); v != nil {
					final(newPanicError(v))
				}
			}()
			for in := range ins {
				if ctx.Err() != nil {
					final(context.Cause(ctx))
					return
				}
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					final(context.Cause(ctx))
					return
				}
				r := &result{done: make(chan struct{}), slot: true}
				queue <- r
				workers.Go(func() {
					defer close(r.done)
					call(ctx, s, in, &r.out, &r.err)
				})
			}
		}()
		for r := range queue {
			<-r.done
			if !yield(r.out, r.err) {
				return
			}
			if r.slot {
				<-slots
			}
		}
	}
}

// sequential is Stream with limit 1: ins and s run on the consumer's
// goroutine, one item after the other.
func sequential[In, Out any](ctx context.Context, ins iter.Seq[In], s Stage[In, Out]) iter.Seq2[Out, error] {
	run := Recover(s)
	return func(yield func(Out, error) bool) {
		next, stop := iter.Pull(ins)
		defer stop()
		var zero Out
		for {
			in, ok, err := pull(next)
			switch {
			case err != nil:
				yield(zero, err)
				return
			case !ok:
				return
			case ctx.Err() != nil:
				yield(zero, context.Cause(ctx))
				return
			}
			if !yield(run(ctx, in)) {
				return
			}
		}
	}
}

// pull calls next, turning a panic in the sequence into a *PanicError.
func pull[T any](next func() (T, bool)) (v T, ok bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = newPanicError(p)
		}
	}()
	v, ok = next()
	return v, ok, nil
}
