package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrAbandoned is wrapped by the error [Bounded] returns when the stage had not
// returned grace after the context ended: the stage is still running in the
// background.
var ErrAbandoned = errors.New("pipeline: stage abandoned")

// ErrTimeout is wrapped by the context cause [Timeout] sets when its deadline
// passes (the cause also wraps context.DeadlineExceeded).
var ErrTimeout = errors.New("pipeline: timeout")

// Bounded returns a stage that runs s in a new goroutine and returns as soon
// as s returns, or grace after ctx is done, whichever comes first (grace <= 0:
// as soon as ctx is done).
//
// When s has not returned by then, the returned error wraps both
// [ErrAbandoned] and context.Cause(ctx). s keeps running in the background
// until it returns, and its result is then discarded: Go cannot kill a
// goroutine, so s must itself watch ctx (which is done by then) to stop
// consuming resources. If ctx is already done when the returned stage is
// called, s is not started and the error wraps context.Cause(ctx) but not
// ErrAbandoned.
//
// A panic in s is returned as a [*PanicError], a runtime.Goexit in s as
// [ErrGoexit]. When s returns at the moment it is abandoned, its result wins.
func Bounded[In, Out any](grace time.Duration, s Stage[In, Out]) Stage[In, Out] {
	type result struct {
		out Out
		err error
	}
	return func(ctx context.Context, in In) (Out, error) {
		var zero Out
		if ctx.Err() != nil {
			return zero, fmt.Errorf("pipeline: stage not started: %w", context.Cause(ctx))
		}
		done := make(chan result, 1) // buffered: an abandoned s never blocks
		go func() {
			var r result
			defer func() { done <- r }()
			call(ctx, s, in, &r.out, &r.err)
		}()
		select {
		case r := <-done:
			return r.out, r.err
		case <-ctx.Done():
		}
		if grace > 0 {
			t := time.NewTimer(grace)
			defer t.Stop()
			select {
			case r := <-done:
				return r.out, r.err
			case <-t.C:
			}
		}
		select {
		case r := <-done:
			return r.out, r.err
		default:
			return zero, fmt.Errorf("%w: %w", ErrAbandoned, context.Cause(ctx))
		}
	}
}

// Timeout returns a stage that runs s with a context that ends after d, and
// stops waiting for s then, as [Bounded] with no grace does.
//
// When the deadline passes, context.Cause of the stage's context, and the
// returned error, wrap [ErrTimeout] and context.DeadlineExceeded; the error
// also wraps ErrAbandoned if s had not returned. A stage that noticed the
// deadline and returned its own error gets ErrTimeout added to that error.
// A deadline or cancellation of the parent ctx passes through unchanged.
// With d <= 0 the deadline has already passed: s is not started.
func Timeout[In, Out any](d time.Duration, s Stage[In, Out]) Stage[In, Out] {
	bounded := Bounded(0, s)
	return func(ctx context.Context, in In) (Out, error) {
		cause := fmt.Errorf("%w after %v: %w", ErrTimeout, d, context.DeadlineExceeded)
		tctx, cancel := context.WithTimeoutCause(ctx, d, cause)
		defer cancel()
		out, err := bounded(tctx, in)
		if err != nil && !errors.Is(err, ErrTimeout) && context.Cause(tctx) == cause {
			err = fmt.Errorf("%w: %w", cause, err)
		}
		return out, err
	}
}
