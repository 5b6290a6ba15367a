package pipeline

import "context"

// Stage is one step of a pipeline: it turns an In into an Out or fails.
//
// A Stage should return promptly once ctx is done, with an error that wraps
// context.Cause(ctx) or ctx.Err(): the wrappers in this package cannot stop a
// stage that ignores its context, only stop waiting for it.
type Stage[In, Out any] func(ctx context.Context, in In) (Out, error)

// Then returns a stage that runs first and then second on first's output.
//
// second is not called when first fails (its error is returned unchanged) or
// when ctx is done after first returned (context.Cause(ctx) is returned).
func Then[A, B, C any](first Stage[A, B], second Stage[B, C]) Stage[A, C] {
	return func(ctx context.Context, in A) (C, error) {
		var zero C
		mid, err := first(ctx, in)
		if err != nil {
			return zero, err
		}
		if ctx.Err() != nil {
			return zero, context.Cause(ctx)
		}
		return second(ctx, mid)
	}
}
