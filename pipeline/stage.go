package pipeline

import "context"

// Stage is one step of a pipeline: it turns an In into an Out or fails.
//
// A Stage should return promptly once ctx is done, with an error that wraps
// context.Cause(ctx) or ctx.Err(): the wrappers in this package cannot stop a
// stage that ignores its context, only stop waiting for it.
type Stage[In, Out any] func(ctx context.Context, in In) (Out, error)
