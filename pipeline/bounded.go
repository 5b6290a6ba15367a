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
	return func(ctx context.Context, in In) (Out, error) {
		var zero Out
		if ctx.Err() != nil {
			return zero, fmt.Errorf("pipeline: stage not started: %w", context.Cause(ctx))
		}
		done := make(chan result[Out], 1) // buffered: an abandoned s never blocks
		go func() {
			var r result[Out]
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
