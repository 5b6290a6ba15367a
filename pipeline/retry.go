package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// ErrPermanent is matched (errors.Is) by every error [Permanent] marks.
var ErrPermanent = errors.New("pipeline: permanent error")

// ErrExhausted is wrapped, together with the last error, by the error [Retry]
// returns when Backoff.MaxAttempts attempts failed.
var ErrExhausted = errors.New("pipeline: retries exhausted")

// Backoff says how long [Retry] waits between attempts. The zero value is
// useful: it waits 100ms, then twice as long each time up to 30s, each delay
// jittered by ±20%, and retries until the context ends.
type Backoff struct {
	// Initial is the delay before the first retry; <= 0 means 100ms.
	Initial time.Duration
	// Max caps every delay, jitter included; <= 0 means 30s. RetryAfter hints
	// may exceed it.
	Max time.Duration
	// Multiplier grows the delay after each retry; 0 means 2, and values
	// below 1 mean 1 (constant delay).
	Multiplier float64
	// Jitter spreads each delay uniformly over ±Jitter of its value; 0 means
	// 0.2, a negative value means no jitter, values above 1 mean 1.
	Jitter float64
	// JitterDown makes the jitter only shorten delays: each delay, capped at
	// Max first, is drawn uniformly from ((1-Jitter)·d, d]. Delays then never
	// exceed the schedule and stay spread once capped; Jitter 0.5 is "equal
	// jitter" and 1 "full jitter".
	JitterDown bool
	// MaxAttempts bounds the number of calls, the first one included;
	// <= 0 means no bound (retry until the context ends), 1 means no retry.
	MaxAttempts int
	// FinalAttempt, when > 0, lets [Retry] fit one last call before the
	// context's deadline when the next delay would reach it: Retry waits
	// only until min(FinalAttempt, half the time left) remains, and stops
	// after that call if it fails too. Set it to the time a call needs. Zero
	// means Retry stops at once. RetryAfter hints are never shortened.
	FinalAttempt time.Duration
}

// Default values of a zero [Backoff].
const (
	DefaultInitial    = 100 * time.Millisecond
	DefaultMax        = 30 * time.Second
	DefaultMultiplier = 2
	DefaultJitter     = 0.2
)

func (b Backoff) normalized() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultInitial
	}
	if b.Max <= 0 {
		b.Max = DefaultMax
	}
	if b.Multiplier == 0 || math.IsNaN(b.Multiplier) {
		b.Multiplier = DefaultMultiplier
	}
	if b.Jitter == 0 || math.IsNaN(b.Jitter) {
		b.Jitter = DefaultJitter
	}
	b.Multiplier = max(b.Multiplier, 1)
	b.Jitter = min(max(b.Jitter, 0), 1)
	return b
}

// Delay returns how long to wait before retry number attempt (1 is the first
// retry, that is the wait after the first failed call): Initial ×
// Multiplier^(attempt-1), jittered, capped at Max (before the jitter with
// JitterDown). attempt < 1 counts as 1. It is safe for concurrent use.
func (b Backoff) Delay(attempt int) time.Duration {
	b = b.normalized()
	attempt = max(attempt, 1)
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(attempt-1))
	switch {
	case b.JitterDown:
		d = min(d, float64(b.Max)) * (1 - b.Jitter*rand.Float64())
	case b.Jitter > 0:
		d *= 1 + b.Jitter*(2*rand.Float64()-1)
	}
	if d >= float64(b.Max) || math.IsInf(d, 0) || math.IsNaN(d) {
		return b.Max
	}
	return time.Duration(max(d, 0))
}

type permanentError struct{ err error }

func (e *permanentError) Error() string        { return e.err.Error() }
func (e *permanentError) Unwrap() error        { return e.err }
func (e *permanentError) Is(target error) bool { return target == ErrPermanent }

// Permanent marks err as not worth retrying: [Retry] returns it at once.
// errors.Is(result, ErrPermanent) is true, err stays reachable through
// errors.Is/As, and the message is err's. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// RetryAfterError carries a server's request to wait before trying again.
type RetryAfterError struct {
	Wait time.Duration
	Err  error
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter asks [Retry] to wait at least d before the next attempt (as an
// HTTP Retry-After header does), even when d exceeds Backoff.Max. The message
// and the chain are err's. RetryAfter(d, nil) is nil.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		return nil
	}
	return &RetryAfterError{Wait: d, Err: err}
}

// Retry returns a stage that calls s until it succeeds, returns an error marked
// [Permanent] (returned as is), has been called b.MaxAttempts times (the error
// wraps [ErrExhausted] and the last error), or ctx ends (the error wraps
// context.Cause(ctx) and the last error; ctx is checked before each call and
// during each wait). Between calls it waits b.Delay(n) or, when the error
// carries a [RetryAfter] hint, the longer of the two.
//
// When ctx has a deadline and the wait would reach it, Retry does not wait in
// vain: it returns at once an error wrapping context.DeadlineExceeded and the
// last error, whose message says whether a RetryAfter hint or the backoff
// reached the deadline. With b.FinalAttempt set, a backoff wait is shortened
// instead to fit one final call (see [Backoff]).
//
// Panics in s are not recovered: they reach Retry's caller (a [Stream] or
// [Bounded] around Retry turns them into a [*PanicError]).
func Retry[In, Out any](b Backoff, s Stage[In, Out]) Stage[In, Out] {
	return func(ctx context.Context, in In) (Out, error) {
		var zero Out
		var last error
		final := false
		for attempt := 1; ; attempt++ {
			if ctx.Err() != nil {
				return zero, stopped(ctx, attempt-1, last)
			}
			out, err := s(ctx, in)
			if err == nil {
				return out, nil
			}
			last = err
			if errors.Is(err, ErrPermanent) {
				return zero, err
			}
			if b.MaxAttempts > 0 && attempt >= b.MaxAttempts {
				return zero, fmt.Errorf("%w after %d attempts: %w", ErrExhausted, attempt, err)
			}
			if ctx.Err() != nil {
				return zero, stopped(ctx, attempt, last)
			}
			if final {
				return zero, tooLate(attempt, "the final attempt before the deadline failed", last)
			}
			wait, hinted := b.Delay(attempt), false
			if ra, ok := errors.AsType[*RetryAfterError](err); ok && ra.Wait > wait {
				wait, hinted = ra.Wait, true
			}
			if deadline, ok := ctx.Deadline(); ok {
				if left := time.Until(deadline); wait >= left {
					switch {
					case hinted:
						return zero, tooLate(attempt, fmt.Sprintf("asked to wait %v, the deadline is in %v", wait, left), last)
					case b.FinalAttempt <= 0 || left <= 0:
						return zero, tooLate(attempt, fmt.Sprintf("the next wait, %v, reaches the deadline in %v", wait, left), last)
					}
					wait, final = left-min(b.FinalAttempt, left/2), true
				}
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return zero, stopped(ctx, attempt, last)
			}
		}
	}
}

// tooLate is Retry's error when the wait before the next attempt reaches the
// context's deadline.
func tooLate(attempts int, why string, last error) error {
	return fmt.Errorf("pipeline: retry stopped after %d attempts: %s: %w; last error: %w", attempts, why, context.DeadlineExceeded, last)
}

func stopped(ctx context.Context, attempts int, last error) error {
	if last == nil {
		return context.Cause(ctx)
	}
	return fmt.Errorf("pipeline: retry stopped after %d attempts: %w; last error: %w", attempts, context.Cause(ctx), last)
}
