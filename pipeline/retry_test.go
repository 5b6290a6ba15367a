package pipeline_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/polyswarm/psengine/pipeline"
)

func TestBackoffDelayWithoutJitter(t *testing.T) {
	b := pipeline.Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: -1}
	var got []time.Duration
	for attempt := -1; attempt <= 7; attempt++ {
		got = append(got, b.Delay(attempt))
	}
	ms := time.Millisecond
	want := []time.Duration{100 * ms, 100 * ms, 100 * ms, 200 * ms, 400 * ms, 800 * ms, time.Second, time.Second, time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Delay(-1..7) (-want +got):\n%s", diff)
	}
	if d := b.Delay(math.MaxInt); d != time.Second {
		t.Fatalf("Delay(MaxInt) = %v; want the cap 1s", d)
	}
}

func TestBackoffZeroValueDefaults(t *testing.T) {
	var b pipeline.Backoff
	seen := map[time.Duration]bool{}
	for range 1000 {
		d1 := b.Delay(1)
		if d1 < 80*time.Millisecond || d1 > 120*time.Millisecond {
			t.Fatalf("zero Backoff Delay(1) = %v; want 100ms ±20%%", d1)
		}
		seen[d1] = true
		if d2 := b.Delay(2); d2 < 160*time.Millisecond || d2 > 240*time.Millisecond {
			t.Fatalf("zero Backoff Delay(2) = %v; want 200ms ±20%%", d2)
		}
		if d := b.Delay(100); d < 24*time.Second || d > 30*time.Second {
			t.Fatalf("zero Backoff Delay(100) = %v; want within [24s, 30s] (jittered, capped)", d)
		}
	}
	if len(seen) < 100 {
		t.Fatalf("1000 jittered delays took only %d distinct values", len(seen))
	}
}

func TestBackoffOddSettings(t *testing.T) {
	tests := []struct {
		name string
		b    pipeline.Backoff
		want []time.Duration // attempts 1..4
	}{
		{"constant", pipeline.Backoff{Initial: time.Second, Multiplier: 1, Jitter: -1}, []time.Duration{time.Second, time.Second, time.Second, time.Second}},
		{"multiplier below 1 is constant", pipeline.Backoff{Initial: time.Second, Multiplier: 0.5, Jitter: -1}, []time.Duration{time.Second, time.Second, time.Second, time.Second}},
		{"max below initial", pipeline.Backoff{Initial: time.Minute, Max: time.Second, Jitter: -1}, []time.Duration{time.Second, time.Second, time.Second, time.Second}},
		{"triple", pipeline.Backoff{Initial: time.Second, Multiplier: 3, Jitter: -1}, []time.Duration{time.Second, 3 * time.Second, 9 * time.Second, 27 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []time.Duration
			for a := 1; a <= 4; a++ {
				got = append(got, tt.b.Delay(a))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestBackoffJitterDown(t *testing.T) {
	// Equal jitter: [b/2, b] with b = min(3s, 100ms·2^(n-1)).
	b := pipeline.Backoff{Initial: 100 * time.Millisecond, Max: 3 * time.Second, Jitter: 0.5, JitterDown: true}
	ms := time.Millisecond
	for i, ceil := range []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3 * time.Second, 3 * time.Second, 3 * time.Second} {
		n := i + 1
		distinct := map[time.Duration]bool{}
		for range 500 {
			d := b.Delay(n)
			if d < ceil/2 || d > ceil {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", n, d, ceil/2, ceil)
			}
			distinct[d] = true
		}
		// Capped delays keep their spread too.
		if len(distinct) < 10 {
			t.Errorf("Delay(%d) took only %d distinct values in 500 draws: no jitter?", n, len(distinct))
		}
	}
	tests := []struct {
		name   string
		b      pipeline.Backoff
		n      int
		lo, hi time.Duration
	}{
		{"full jitter", pipeline.Backoff{Initial: time.Second, Jitter: 1, JitterDown: true}, 3, 0, 4 * time.Second},
		{"no jitter", pipeline.Backoff{Initial: time.Second, Jitter: -1, JitterDown: true}, 3, 4 * time.Second, 4 * time.Second},
		{"huge max does not overflow", pipeline.Backoff{Initial: time.Second, Max: math.MaxInt64, Jitter: 0.5, JitterDown: true}, 200, math.MaxInt64 / 2, math.MaxInt64},
		{"nanosecond max", pipeline.Backoff{Initial: 1, Max: 1, Jitter: 0.5, JitterDown: true}, 3, 0, 1},
	}
	for _, tt := range tests {
		for range 100 {
			if d := tt.b.Delay(tt.n); d < tt.lo || d > tt.hi {
				t.Fatalf("%s: Delay(%d) = %v, want within [%v, %v]", tt.name, tt.n, d, tt.lo, tt.hi)
			}
		}
	}
}

// flaky fails until call number succeedAt, recording the number and time of each call.
type flaky struct {
	succeedAt int
	err       error
	calls     []int
	at        []time.Duration
	start     time.Time
}

func (f *flaky) stage(ctx context.Context, in string) (string, error) {
	f.calls = append(f.calls, len(f.calls)+1)
	f.at = append(f.at, time.Since(f.start))
	if len(f.calls) >= f.succeedAt {
		return in + "!", nil
	}
	return "", f.err
}

func TestRetrySucceeds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &flaky{succeedAt: 4, err: errBoom, start: time.Now()}
		b := pipeline.Backoff{Initial: time.Second, Jitter: -1}
		out, err := pipeline.Retry(b, f.stage)(t.Context(), "ok")
		if err != nil || out != "ok!" {
			t.Fatalf("Retry = %q, %v; want ok!, nil", out, err)
		}
		if diff := cmp.Diff([]int{1, 2, 3, 4}, f.calls); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
		want := []time.Duration{0, time.Second, 3 * time.Second, 7 * time.Second}
		if diff := cmp.Diff(want, f.at); diff != "" {
			t.Errorf("call times (-want +got):\n%s", diff)
		}
	})
}

func TestRetryPermanent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &flaky{succeedAt: 10, err: pipeline.Permanent(errBoom), start: time.Now()}
		_, err := pipeline.Retry(pipeline.Backoff{}, f.stage)(t.Context(), "x")
		if !errors.Is(err, pipeline.ErrPermanent) || !errors.Is(err, errBoom) || err.Error() != "boom" {
			t.Errorf("err = %v; want permanent boom with message boom", err)
		}
		if len(f.calls) != 1 || time.Since(f.start) != 0 {
			t.Errorf("calls = %v after %v; want one call, no wait", f.calls, time.Since(f.start))
		}
	})
	if pipeline.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
}

func TestRetryMaxAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &flaky{succeedAt: 10, err: errBoom, start: time.Now()}
		b := pipeline.Backoff{Initial: time.Second, Jitter: -1, MaxAttempts: 3}
		_, err := pipeline.Retry(b, f.stage)(t.Context(), "x")
		if !errors.Is(err, pipeline.ErrExhausted) || !errors.Is(err, errBoom) {
			t.Errorf("err = %v; want ErrExhausted and boom", err)
		}
		if diff := cmp.Diff([]int{1, 2, 3}, f.calls); diff != "" {
			t.Errorf("attempts (-want +got):\n%s", diff)
		}
		if elapsed := time.Since(f.start); elapsed != 3*time.Second {
			t.Errorf("elapsed %v; want 3s (1s + 2s, no wait after the last attempt)", elapsed)
		}
	})
}

func TestRetryStopsWhenContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &flaky{succeedAt: 1000, err: errBoom, start: time.Now()}
		cause := errors.New("shutdown")
		ctx, cancel := context.WithCancelCause(t.Context())
		time.AfterFunc(10*time.Second, func() { cancel(cause) })
		b := pipeline.Backoff{Initial: time.Second, Jitter: -1}
		_, err := pipeline.Retry(b, f.stage)(ctx, "x")
		if !errors.Is(err, cause) || !errors.Is(err, errBoom) {
			t.Errorf("err = %v; want both the cause and the last error", err)
		}
		// Calls at 0, 1, 3, 7; the next would be at 15 > 10.
		if diff := cmp.Diff([]int{1, 2, 3, 4}, f.calls); diff != "" {
			t.Errorf("attempts (-want +got):\n%s", diff)
		}
		if elapsed := time.Since(f.start); elapsed != 10*time.Second {
			t.Errorf("returned after %v; want when ctx was canceled, at 10s", elapsed)
		}
	})
}

func TestRetryDoesNotWaitPastTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &flaky{succeedAt: 1000, err: errBoom, start: time.Now()}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		b := pipeline.Backoff{Initial: time.Second, Jitter: -1}
		_, err := pipeline.Retry(b, f.stage)(ctx, "x")
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errBoom) {
			t.Errorf("err = %v; want both DeadlineExceeded and the last error", err)
		}
		if !strings.Contains(err.Error(), "the next wait, 8s, reaches the deadline in 3s") {
			t.Errorf("err = %q; want it to name the wait and the time left", err)
		}
		// Calls at 0, 1, 3, 7; the next would be at 15 > 10: no wait for nothing.
		if diff := cmp.Diff([]int{1, 2, 3, 4}, f.calls); diff != "" {
			t.Errorf("attempts (-want +got):\n%s", diff)
		}
		if elapsed := time.Since(f.start); elapsed != 7*time.Second {
			t.Errorf("returned after %v; want at once after the 4th call, at 7s", elapsed)
		}
		if ctx.Err() != nil {
			t.Error("ctx already ended: Retry waited for it")
		}
	})
}

func TestRetryAfterHintPastTheDeadlineStopsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		for _, hint := range []time.Duration{10 * time.Second, time.Hour} {
			f := &flaky{succeedAt: 2, err: pipeline.RetryAfter(hint, errBoom), start: time.Now()}
			// FinalAttempt shortens backoff waits only, never a hint.
			b := pipeline.Backoff{Initial: time.Millisecond, FinalAttempt: time.Second}
			_, err := pipeline.Retry(b, f.stage)(ctx, "x")
			if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errBoom) {
				t.Errorf("hint %v: err = %v; want DeadlineExceeded and the last error", hint, err)
			}
			if want := "asked to wait " + hint.String() + ", the deadline is in 10s"; !strings.Contains(err.Error(), want) {
				t.Errorf("hint %v: err = %q; want it to contain %q", hint, err, want)
			}
			if len(f.calls) != 1 || time.Since(f.start) != 0 {
				t.Errorf("hint %v: %d calls over %v; want 1 call and no wait", hint, len(f.calls), time.Since(f.start))
			}
		}
	})
}

func TestRetryFitsAFinalAttemptBeforeTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &flaky{succeedAt: 1000, err: errBoom, start: time.Now()}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		// Calls at 0 and 8; the next wait (16s) would end at 24 > 20, so a
		// final call starts with min(4s, 12s/2) left, at 16, and is the last.
		b := pipeline.Backoff{Initial: 8 * time.Second, Jitter: -1, FinalAttempt: 4 * time.Second}
		_, err := pipeline.Retry(b, f.stage)(ctx, "x")
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errBoom) {
			t.Errorf("err = %v; want DeadlineExceeded and the last error", err)
		}
		if !strings.Contains(err.Error(), "the final attempt before the deadline failed") {
			t.Errorf("err = %q; want it to say the final attempt failed", err)
		}
		if diff := cmp.Diff([]time.Duration{0, 8 * time.Second, 16 * time.Second}, f.at); diff != "" {
			t.Errorf("call times (-want +got):\n%s", diff)
		}
		if elapsed := time.Since(f.start); elapsed != 16*time.Second {
			t.Errorf("returned after %v; want right after the final call, at 16s", elapsed)
		}

		// Less time left than FinalAttempt: the final call gets half of it.
		f = &flaky{succeedAt: 2, err: errBoom, start: time.Now()}
		ctx, cancel = context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		b = pipeline.Backoff{Initial: time.Minute, Jitter: -1, FinalAttempt: 4 * time.Second}
		if _, err := pipeline.Retry(b, f.stage)(ctx, "x"); err != nil {
			t.Fatalf("Retry: %v; want the final call's success", err)
		}
		if diff := cmp.Diff([]time.Duration{0, 1500 * time.Millisecond}, f.at); diff != "" {
			t.Errorf("call times (-want +got):\n%s", diff)
		}
	})
}

func TestRetryContextDoneBeforeStart(t *testing.T) {
	cause := errors.New("already over")
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(cause)
	f := &flaky{succeedAt: 1}
	if _, err := pipeline.Retry(pipeline.Backoff{}, f.stage)(ctx, "x"); err != cause || len(f.calls) != 0 {
		t.Fatalf("err = %v, calls = %v; want the cause and no call", err, f.calls)
	}
}

func TestRetryStageNoticesCancellation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cause := errors.New("shutdown")
		ctx, cancel := context.WithCancelCause(t.Context())
		time.AfterFunc(time.Minute, func() { cancel(cause) })
		calls := 0
		st := func(ctx context.Context, _ int) (int, error) {
			calls++
			<-ctx.Done()
			return 0, ctx.Err()
		}
		_, err := pipeline.Retry(pipeline.Backoff{}, st)(ctx, 0)
		if !errors.Is(err, cause) || !errors.Is(err, context.Canceled) || calls != 1 {
			t.Fatalf("err = %v after %d calls; want cause and Canceled after 1 call", err, calls)
		}
	})
}

func TestRetryHonoursRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &flaky{succeedAt: 3, err: pipeline.RetryAfter(time.Minute, errBoom), start: time.Now()}
		// Max is below the hint: the hint still wins.
		b := pipeline.Backoff{Initial: time.Second, Max: 2 * time.Second, Jitter: -1}
		if _, err := pipeline.Retry(b, f.stage)(t.Context(), "x"); err != nil {
			t.Fatal(err)
		}
		want := []time.Duration{0, time.Minute, 2 * time.Minute}
		if diff := cmp.Diff(want, f.at); diff != "" {
			t.Errorf("call times (-want +got):\n%s", diff)
		}

		// A hint shorter than the backoff does not shorten it.
		f = &flaky{succeedAt: 2, err: pipeline.RetryAfter(time.Millisecond, errBoom), start: time.Now()}
		if _, err := pipeline.Retry(b, f.stage)(t.Context(), "x"); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]time.Duration{0, time.Second}, f.at); diff != "" {
			t.Errorf("call times with a short hint (-want +got):\n%s", diff)
		}
	})
	err := pipeline.RetryAfter(time.Second, errBoom)
	if ra, ok := errors.AsType[*pipeline.RetryAfterError](err); !ok || ra.Wait != time.Second || !errors.Is(err, errBoom) || err.Error() != "boom" {
		t.Errorf("RetryAfter(1s, boom) = %#v; want a *RetryAfterError wrapping boom", err)
	}
	if pipeline.RetryAfter(time.Second, nil) != nil {
		t.Error("RetryAfter(d, nil) != nil")
	}
}
