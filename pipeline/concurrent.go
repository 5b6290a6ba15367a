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
// as soon as it is ready and every earlier one was yielded. Every value read
// from ins gets exactly one result, in its place, unless the consumer stops
// early.
//
// With limit > 1, ins is read in a goroutine Stream starts and the stages run
// on a pool of at most limit goroutines (github.com/sourcegraph/conc/pool),
// reused from item to item. That pool is the only bound: a goroutine stays
// with its item until yield returned for the item's result, so the reader
// waits for a free goroutine and a slow consumer holds back reading ins. At
// most limit+1 values are read from ins and not yet yielded (yield has not
// returned for them): limit in the pool, running, waiting for their turn or
// being yielded, and one waiting for a free goroutine. yield always runs on
// the consumer's goroutine.
//
// With limit 1 nothing runs concurrently, so Stream starts no goroutine: it
// reads ins (through iter.Pull) and runs s on the consumer's goroutine, item
// after item, as a plain loop would (a runtime.Goexit in s then ends the
// consumer's goroutine, as it would in a loop). With limit > 1 a
// runtime.Goexit in s ends only the pool goroutine running it, and the item's
// result is [ErrGoexit].
//
// When ctx ends, no further stage starts and at most one more value is read
// from ins. The results of the stages already started are yielded; a value
// that was waiting for a free goroutine, and the value read after ctx ended
// (if ins had another), each get a (zero, context.Cause(ctx)) result in their
// place; then the iteration ends. When
// the consumer stops early (break), the context of the running stages is
// cancelled with cause [ErrStopped] and the iteration waits for them and for
// ins to return before it does: no goroutine is left behind. An ins that
// blocks must therefore itself end when ctx ends. A panic in s becomes a
// [*PanicError] result; a panic in ins becomes a final [*PanicError] result.
//
// Each iteration of the returned sequence starts over, reading ins again.
func Stream[In, Out any](ctx context.Context, limit int, ins iter.Seq[In], s Stage[In, Out]) iter.Seq2[Out, error] {
	if limit <= 1 {
		return sequential(ctx, ins, s)
	}
	return func(yield func(Out, error) bool) {
		ctx, cancel := context.WithCancelCause(ctx)
		h := handoff[Out]{results: make(chan result[Out]), taken: make(chan struct{}), gone: make(chan struct{})}
		fed := make(chan struct{})
		go func() {
			defer close(fed)
			defer close(h.results)
			feed(ctx, limit, ins, s, h)
		}()
		defer func() {
			cancel(ErrStopped)
			close(h.gone)
			<-fed
		}()
		for r := range h.results {
			if !yield(r.out, r.err) {
				return
			}
			h.taken <- struct{}{}
		}
	}
}

// feed reads ins and runs s on each value on a pool of limit goroutines. Each
// task hands its result to h once the task before it has, and frees its
// goroutine once the consumer's yield returned. feed returns once every task
// has.
//
// It does not use conc's stream package, which orders callbacks the same way:
// that package takes its per-task channels from a process-wide sync.Pool, so
// a channel made inside a testing/synctest bubble is later used outside it and
// the runtime aborts the whole test binary ("receive on synctest channel from
// outside bubble"); every test of a program that streams under synctest would
// be at risk.
func feed[In, Out any](ctx context.Context, limit int, ins iter.Seq[In], s Stage[In, Out], h handoff[Out]) {
	workers := pool.New().WithMaxGoroutines(limit)
	turn := make(chan struct{}) // closed when the previous task has handed its result over
	close(turn)
	var final error // the result after the last task's, if any
	func() {
		defer func() {
			if v := recover(); v != nil {
				final = newPanicError(v)
			}
		}()
		for in := range ins {
			if ctx.Err() != nil {
				final = context.Cause(ctx)
				return
			}
			mine, next := turn, make(chan struct{})
			turn = next
			workers.Go(func() {
				var r result[Out]
				defer func() { // also on runtime.Goexit in s: r.err is ErrGoexit then
					<-mine
					h.hand(r)
					close(next)
				}()
				if ctx.Err() != nil { // waited for a goroutine until after ctx ended
					r.err = context.Cause(ctx)
					return
				}
				call(ctx, s, in, &r.out, &r.err)
			})
			select {
			case <-h.gone: // nobody takes a result any more: read no further
				return
			default:
			}
		}
	}()
	workers.Wait()
	if final != nil {
		h.hand(result[Out]{err: final})
	}
}

type result[Out any] struct {
	out Out
	err error
}

// handoff passes results from the pool to the consumer's goroutine.
type handoff[Out any] struct {
	results chan result[Out] // unbuffered: the consumer takes each result
	taken   chan struct{}    // the consumer's yield returned true
	gone    chan struct{}    // closed when the consumer no longer takes results
}

// hand gives r to the consumer and waits until its yield has returned, so
// that the caller's goroutine (and so the pool's bound) stays taken until
// then; or until the consumer is gone.
func (h handoff[Out]) hand(r result[Out]) {
	select {
	case h.results <- r:
	case <-h.gone:
		return
	}
	select {
	case <-h.taken:
	case <-h.gone:
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
