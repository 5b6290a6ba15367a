// Package pipeline composes staged processing: a [Stage] is one step
// func(ctx, in) (out, error), and the functions here combine stages, bound
// them in time, retry them and run them concurrently. The package knows nothing
// about what flows through it.
//
// # Composition
//
// [Then] chains two stages; the second is not called when the first fails or
// the context is done.
//
// # Panics
//
// Every function here that runs a stage in a goroutine it starts ([Bounded],
// [Timeout], [MapAll], [Map], [Stream]) recovers a panic in that stage and
// returns it as a [*PanicError] carrying the stack, so one bad input cannot
// take the host process down. [Recover] does the same for a stage run on the
// caller's goroutine, and [Protect] for a plain func() such as a hook. A stage
// that calls runtime.Goexit (t.FailNow does) in such a goroutine yields
// [ErrGoexit].
//
// # Time
//
// [Bounded] returns as soon as the stage returns or a grace period after the
// context ends, whichever comes first; [Timeout] adds a deadline. Go cannot stop a goroutine from the
// outside: a stage that ignores its context keeps running after it was
// abandoned, and its result is discarded. Stages must watch ctx to really stop.
//
// # Retry
//
// [Retry] calls a stage again after a jittered exponential [Backoff] until it
// succeeds, returns an error marked [Permanent], runs out of attempts, the
// context ends, or the next wait would reach the context's deadline (then it
// stops at once, after an optional final attempt: Backoff.FinalAttempt). A stage can ask for a longer wait with [RetryAfter] and learn
// which attempt it is in with [Attempt].
//
// # Concurrency
//
// [MapAll] runs every input and reports each result and error; [Map] stops at
// the first error, cancelling the rest with that error as the context cause
// (errgroup semantics); [Stream] consumes an iterator and yields results in
// input order as soon as they are ready, with at most limit items started and
// not yet yielded, on a pool of reused goroutines (none with limit 1). All
// three keep input order and leave no goroutine behind
// when they return, which means they wait for every stage they started: wrap
// a stage that may ignore its context with [Bounded] or [Timeout].
package pipeline
