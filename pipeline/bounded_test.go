package pipeline_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/polyswarm/psengine/pipeline"
)

func TestBoundedReturnsResult(t *testing.T) {
	st := pipeline.Bounded(0, func(_ context.Context, n int) (int, error) { return n * 2, errBoom })
	out, err := st(t.Context(), 21)
	if out != 42 || err != errBoom {
		t.Fatalf("Bounded = %v, %v; want 42, boom", out, err)
	}
}

func TestBoundedAbandons(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	finished := make(chan int)
	st := pipeline.Bounded(0, func(_ context.Context, n int) (int, error) {
		close(started)
		<-release // ignores its context on purpose
		finished <- n
		return n, nil
	})
	cause := errors.New("operator pressed stop")
	ctx, cancel := context.WithCancelCause(t.Context())
	go func() {
		<-started // cancelled before the start, the stage is not started at all (see below)
		cancel(cause)
	}()

	_, err := st(ctx, 7)
	if !errors.Is(err, pipeline.ErrAbandoned) || !errors.Is(err, cause) {
		t.Fatalf("err = %v; want it to wrap ErrAbandoned and the cause", err)
	}
	// The abandoned stage is still running; let it finish so nothing leaks.
	close(release)
	if n := <-finished; n != 7 {
		t.Fatalf("abandoned stage got %d; want 7", n)
	}
}

func TestBoundedNotStartedWhenDone(t *testing.T) {
	cause := errors.New("too late")
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(cause)
	called := false
	_, err := pipeline.Bounded(0, func(context.Context, int) (int, error) { called = true; return 0, nil })(ctx, 1)
	if called || !errors.Is(err, cause) || errors.Is(err, pipeline.ErrAbandoned) {
		t.Fatalf("called = %v, err = %v; want not called, the cause, not ErrAbandoned", called, err)
	}
}

func TestBoundedRecoversPanic(t *testing.T) {
	_, err := pipeline.Bounded(0, func(context.Context, int) (int, error) { panicker("in goroutine"); return 0, nil })(t.Context(), 1)
	if pe, ok := errors.AsType[*pipeline.PanicError](err); !ok || pe.Value != "in goroutine" {
		t.Fatalf("err = %v; want *PanicError", err)
	}
}

func TestBoundedGoexit(t *testing.T) {
	_, err := pipeline.Bounded(0, func(context.Context, int) (int, error) { runtime.Goexit(); return 1, nil })(t.Context(), 1)
	if !errors.Is(err, pipeline.ErrGoexit) {
		t.Fatalf("err = %v; want ErrGoexit", err)
	}
}

// With a grace, Bounded waits that long after ctx ends for s to return,
// and walks away exactly then.
func TestBoundedGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := func(ctx context.Context, after time.Duration) (time.Duration, error) {
			<-ctx.Done()
			time.Sleep(after) // returns late, after its ctx ended
			return after, nil
		}
		st := pipeline.Bounded(time.Second, slow)
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		start := time.Now()
		if out, err := st(ctx, 999*time.Millisecond); err != nil || out != 999*time.Millisecond {
			t.Errorf("within the grace: %v, %v; want its result", out, err)
		}
		if took := time.Since(start); took != time.Minute+999*time.Millisecond {
			t.Errorf("returned after %v", took)
		}

		ctx2, cancel2 := context.WithTimeout(t.Context(), time.Minute)
		defer cancel2()
		start = time.Now()
		_, err := st(ctx2, time.Hour)
		if !errors.Is(err, pipeline.ErrAbandoned) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("past the grace: err = %v, want ErrAbandoned and the deadline", err)
		}
		if took := time.Since(start); took != time.Minute+time.Second {
			t.Errorf("walked away after %v, want the minute plus the 1s grace", took)
		}
		time.Sleep(time.Hour) // the abandoned stage returns; nothing leaks
	})
}
