package pipeline

import (
	"context"
	"errors"
	"iter"

	"github.com/sourcegraph/conc/pool"
)

// ErrStopped is the context cause seen by the stages of a [Stream] whose
// consumer stopped iterating early.
var ErrStopped = errors.New("pipeline: stream consumer stopped")

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
			var out Out
			call(ctx, s, in, &out, &err)
			if !yield(out, err) {
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
