package pipeline

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
)

// ErrPanic matches every [*PanicError] with errors.Is.
var ErrPanic = errors.New("pipeline: panic")

// ErrGoexit is returned for a stage that called runtime.Goexit (for instance
// through t.FailNow) in a goroutine this package started, instead of returning.
var ErrGoexit = errors.New("pipeline: stage called runtime.Goexit")

// PanicError is a panic recovered from a stage or a hook.
type PanicError struct {
	// Value is what was passed to panic.
	Value any
	// Stack is the stack of the panicking goroutine, as runtime/debug.Stack
	// formats it, taken where the panic was recovered.
	Stack []byte
}

// Error returns "pipeline: panic: " and the panic value on one line; the stack
// is in Stack.
func (e *PanicError) Error() string {
	return fmt.Sprintf("%v: %v", ErrPanic, e.Value)
}

// Unwrap returns Value when it is an error (so errors.Is(err, io.EOF) sees a
// panic(io.EOF)), else nil.
func (e *PanicError) Unwrap() error {
	if err, ok := e.Value.(error); ok {
		return err
	}
	return nil
}

// Is reports whether target is [ErrPanic].
func (e *PanicError) Is(target error) bool { return target == ErrPanic }

// newPanicError must be called from the deferred function that recovered v.
func newPanicError(v any) *PanicError {
	return &PanicError{Value: v, Stack: debug.Stack()}
}

// Protect runs fn and returns a [*PanicError] if it panics, nil otherwise.
// It is meant for hooks and callbacks whose failure must not stop the caller.
func Protect(fn func()) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = newPanicError(v)
		}
	}()
	fn()
	return nil
}

// call runs s on the current goroutine with panics recovered. If s calls
// runtime.Goexit, call does not return, but the deferred code of its caller
// sees *errp == ErrGoexit: callers set the result from within a defer.
func call[In, Out any](ctx context.Context, s Stage[In, Out], in In, outp *Out, errp *error) {
	*errp = ErrGoexit
	defer func() {
		if v := recover(); v != nil {
			var zero Out
			*outp, *errp = zero, newPanicError(v)
		}
	}()
	*outp, *errp = s(ctx, in)
}
