// Package pipeline runs staged processing: a [Stage] is one step
// func(ctx, in) (out, error), and the functions here bound a stage in time,
// retry it, and run it over a stream of inputs concurrently. The package knows
// nothing about what flows through it.
//
// # Panics
//
// The functions that run a stage in a goroutine they start ([Bounded], and
// [Stream] with a limit above 1) recover a panic in that stage and return it
// as a [*PanicError] carrying the stack, so one bad input cannot take the host
// process down; a stage that calls runtime.Goexit (t.FailNow does) there
// yields [ErrGoexit]. [Stream] with limit 1 recovers panics too, on the
// consumer's goroutine. [Protect] does the same for a plain func() such as a
// hook.
//
// # Time
//
// [Bounded] returns as soon as the stage returns or a grace period after the
// context ends, whichever comes first. Go cannot stop a goroutine from the
// outside: a stage that ignores its context keeps running after it was
// abandoned, and its result is discarded. Stages must watch ctx to really
// stop.
//
// # Retry
//
// [Retry] calls a stage again after a jittered exponential [Backoff] until it
// succeeds, returns an error marked [Permanent], runs out of attempts, the
// context ends, or the next wait would reach the context's deadline (then it
// stops at once, after an optional final attempt: Backoff.FinalAttempt). A
// stage can ask for a longer wait with [RetryAfter].
//
// # Concurrency
//
// [Stream] consumes an iterator and yields results in input order as soon as
// they are ready, with at most limit stages running, on a pool of reused
// goroutines (github.com/sourcegraph/conc/pool, whose bound is the stream's
// only one; no goroutine at all with limit 1). It reads its input only as far
// as the consumer keeps up, and leaves no goroutine behind when the iteration
// ends, which means it waits for every stage it started: wrap a stage that may
// ignore its context with [Bounded].
package pipeline
