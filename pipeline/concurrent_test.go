package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/polyswarm/psengine/pipeline"
)

// gauge tracks how many stages run at once.
type gauge struct {
	active, peak atomic.Int64
}

func (g *gauge) enter() {
	n := g.active.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func (g *gauge) leave() { g.active.Add(-1) }

// squareSlowly sleeps a random while (fake time inside a synctest bubble),
// then squares n; it fails for negative n and panics for n == 13.
func (g *gauge) squareSlowly(ctx context.Context, n int) (int, error) {
	g.enter()
	defer g.leave()
	time.Sleep(time.Duration(1+rand.IntN(1000)) * time.Millisecond)
	switch {
	case n == 13:
		panic("unlucky")
	case n < 0:
		return 0, fmt.Errorf("negative %d", n)
	}
	return n * n, ctx.Err()
}

func count(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func squares(ins []int) []int {
	out := make([]int, len(ins))
	for i, n := range ins {
		out[i] = n * n
	}
	return out
}

// collect drains a stream into values and error strings.
func collect(seq iter.Seq2[int, error]) (outs []int, errs []string) {
	for out, err := range seq {
		outs = append(outs, out)
		if err != nil {
			errs = append(errs, err.Error())
		} else {
			errs = append(errs, "")
		}
	}
	return outs, errs
}

func TestStreamOrderAndLimit(t *testing.T) {
	for _, limit := range []int{0, 1, 4, 64} {
		t.Run(fmt.Sprint("limit=", limit), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var g gauge
				ins := count(60)
				outs, errs := collect(pipeline.Stream(t.Context(), limit, slices.Values(ins), g.squareSlowly))
				want := squares(ins)
				want[13] = 0
				if diff := cmp.Diff(want, outs); diff != "" {
					t.Errorf("outs (-want +got):\n%s", diff)
				}
				wantErrs := make([]string, len(ins))
				wantErrs[13] = "pipeline: panic: unlucky"
				if diff := cmp.Diff(wantErrs, errs); diff != "" {
					t.Errorf("errs (-want +got):\n%s", diff)
				}
				if p, want := g.peak.Load(), int64(min(max(limit, 1), len(ins))); p != want {
					t.Errorf("peak concurrency %d; want %d", p, want)
				}
			})
		})
	}
}

// TestStreamBoundedReadAhead consumes slowly and checks that the stream pulls
// at most limit+1 inputs beyond those whose yield has returned (limit held by
// the pool's goroutines, one waiting for a free goroutine), and that it does
// read that far ahead: the bound is the pool's, and it is exact.
func TestStreamBoundedReadAhead(t *testing.T) {
	for _, limit := range []int{2, 3, 8} {
		t.Run(fmt.Sprint("limit=", limit), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var pulled, yielded, worst atomic.Int64
				ins := func(yield func(int) bool) {
					for i := range 100 {
						if ahead := pulled.Add(1) - yielded.Load(); ahead > worst.Load() {
							worst.Store(ahead)
						}
						if !yield(i) {
							return
						}
					}
				}
				fast := func(_ context.Context, n int) (int, error) { return n, nil }
				next := 0
				for out, err := range pipeline.Stream(t.Context(), limit, ins, fast) {
					if err != nil || out != next {
						t.Fatalf("got %d, %v; want %d", out, err, next)
					}
					next++
					time.Sleep(time.Second) // slow consumer
					synctest.Wait()         // let the producer run as far as it can
					yielded.Add(1)          // this yield returns now
				}
				if next != 100 {
					t.Fatalf("yielded %d; want 100", next)
				}
				if w := worst.Load(); w != int64(limit)+1 {
					t.Fatalf("read at most %d inputs ahead of the consumer; want exactly limit+1 = %d", w, limit+1)
				}
			})
		})
	}
}

// TestStreamYieldsWhileInputBlocks checks a result is yielded as soon as it is
// ready, even when the input sequence is waiting for its next value.
func TestStreamYieldsWhileInputBlocks(t *testing.T) {
	results := make(chan int)
	ins := func(yield func(int) bool) {
		for i := range 3 {
			if !yield(i) {
				return
			}
			if <-results != i { // blocks until the consumer saw result i
				panic("out of order")
			}
		}
	}
	id := func(_ context.Context, n int) (int, error) { return n, nil }
	var got []int
	for out, err := range pipeline.Stream(t.Context(), 4, ins, id) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, out)
		results <- out
	}
	if diff := cmp.Diff([]int{0, 1, 2}, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestStreamEarlyBreak(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		causes := map[int]error{}
		st := func(ctx context.Context, i int) (int, error) {
			if i == 0 {
				// Fake time moves once every goroutine is blocked: by then
				// the producer has started 0..3 and waits with 4 for a slot.
				time.Sleep(time.Second)
				return 0, nil
			}
			<-ctx.Done() // the others run until cancelled
			mu.Lock()
			causes[i] = context.Cause(ctx)
			mu.Unlock()
			return 0, ctx.Err()
		}
		pulled := 0
		ins := func(yield func(int) bool) {
			for i := 0; ; i++ { // endless
				pulled++
				if !yield(i) {
					return
				}
			}
		}
		for out, err := range pipeline.Stream(t.Context(), 4, ins, st) {
			if out != 0 || err != nil {
				t.Fatalf("first result = %d, %v", out, err)
			}
			break
		}
		// Stream returned: every stage has finished and seen ErrStopped.
		mu.Lock()
		defer mu.Unlock()
		if len(causes) != 3 {
			t.Errorf("%d stages were cancelled; want 3 (1, 2 and 3)", len(causes))
		}
		for i, c := range causes {
			if c != pipeline.ErrStopped {
				t.Errorf("stage %d saw cause %v; want ErrStopped", i, c)
			}
		}
		if pulled != 5 {
			t.Errorf("pulled %d inputs from an endless sequence; want 5 (limit + 1)", pulled)
		}
	})
	goleak.VerifyNone(t)
}

func TestStreamEarlyBreakRealTime(t *testing.T) {
	// Outside a bubble too: real goroutines, real scheduling.
	block := func(ctx context.Context, i int) (int, error) {
		if i < 2 {
			return i, nil
		}
		<-ctx.Done()
		return 0, ctx.Err()
	}
	n := 0
	for range pipeline.Stream(t.Context(), 8, slices.Values(count(1000)), block) {
		n++
		if n == 2 {
			break
		}
	}
	goleak.VerifyNone(t)
}

func TestStreamParentCancelled(t *testing.T) {
	cause := errors.New("shutting down")
	for _, tt := range []struct {
		limit   int
		outs    []int
		errs    []string
		started []bool
	}{
		// 0 finishes at 1s; 1 is cancelled at 1.5s; 2 is read but never started.
		{1, []int{0, -1, 0}, []string{"", cause.Error(), cause.Error()}, []bool{true, true, false}},
		// 0 and 1 finish at 1s, and 2 and 3 start then; 4 waits for a free
		// goroutine. At 1.5s 2 and 3 are cancelled; 4 gets a goroutine but
		// does not start; 5 is read and not started; 6.. are never read.
		{2, []int{0, 1, -1, -1, 0, 0}, []string{"", "", cause.Error(), cause.Error(), cause.Error(), cause.Error()}, []bool{true, true, true, true, false, false}},
	} {
		t.Run(fmt.Sprint("limit=", tt.limit), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancelCause(t.Context())
				time.AfterFunc(1500*time.Millisecond, func() { cancel(cause) })
				var mu sync.Mutex
				started := make([]bool, len(tt.started))
				st := func(ctx context.Context, i int) (int, error) {
					mu.Lock()
					started[i] = true
					mu.Unlock()
					select {
					case <-time.After(time.Second):
						return i, nil
					case <-ctx.Done():
						return -1, context.Cause(ctx)
					}
				}
				read := 0
				ins := func(yield func(int) bool) {
					for i := range 10 {
						read++
						if !yield(i) {
							return
						}
					}
				}
				outs, errs := collect(pipeline.Stream(ctx, tt.limit, ins, st))
				if diff := cmp.Diff(tt.outs, outs); diff != "" {
					t.Errorf("outs (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tt.errs, errs); diff != "" {
					t.Errorf("errs (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tt.started, started); diff != "" {
					t.Errorf("started (-want +got):\n%s", diff)
				}
				if read != len(tt.outs) {
					t.Errorf("read %d inputs; want %d, one result each", read, len(tt.outs))
				}
			})
		})
	}
}

// TestStreamGoexit checks that a stage calling runtime.Goexit on the pool
// gets ErrGoexit in its place and the stream goes on, also when it is the
// last item.
func TestStreamGoexit(t *testing.T) {
	st := func(_ context.Context, n int) (int, error) {
		if n%3 == 1 {
			runtime.Goexit()
		}
		return n, nil
	}
	outs, errs := collect(pipeline.Stream(t.Context(), 2, slices.Values(count(8)), st))
	if diff := cmp.Diff([]int{0, 0, 2, 3, 0, 5, 6, 0}, outs); diff != "" {
		t.Errorf("outs (-want +got):\n%s", diff)
	}
	g := pipeline.ErrGoexit.Error()
	if diff := cmp.Diff([]string{"", g, "", "", g, "", "", g}, errs); diff != "" {
		t.Errorf("errs (-want +got):\n%s", diff)
	}
}

func TestStreamInputPanics(t *testing.T) {
	ins := func(yield func(int) bool) {
		yield(1)
		panicker("bad iterator")
	}
	id := func(_ context.Context, n int) (int, error) { return n, nil }
	for _, limit := range []int{1, 2} { // sequential, and with a pool
		outs, errs := collect(pipeline.Stream(t.Context(), limit, ins, id))
		if diff := cmp.Diff([]int{1, 0}, outs); diff != "" {
			t.Errorf("limit %d: outs (-want +got):\n%s", limit, diff)
		}
		if diff := cmp.Diff([]string{"", "pipeline: panic: bad iterator"}, errs); diff != "" {
			t.Errorf("limit %d: errs (-want +got):\n%s", limit, diff)
		}
	}
}

func TestStreamConsumerPanics(t *testing.T) {
	block := func(ctx context.Context, i int) (int, error) {
		if i == 0 {
			return 0, nil
		}
		<-ctx.Done()
		return 0, ctx.Err()
	}
	err := pipeline.Protect(func() {
		for range pipeline.Stream(t.Context(), 4, slices.Values(count(10)), block) {
			panic("consumer bug")
		}
	})
	if pe, ok := errors.AsType[*pipeline.PanicError](err); !ok || pe.Value != "consumer bug" {
		t.Fatalf("err = %v; want the consumer's panic to propagate", err)
	}
	goleak.VerifyNone(t) // and the stream cleaned up on the way
}

func TestStreamRestarts(t *testing.T) {
	id := func(_ context.Context, n int) (int, error) { return n, nil }
	seq := pipeline.Stream(t.Context(), 2, slices.Values(count(5)), id)
	a, _ := collect(seq)
	b, _ := collect(seq)
	if diff := cmp.Diff(a, b); diff != "" || len(a) != 5 {
		t.Fatalf("second iteration differs (-first +second):\n%s", diff)
	}
}
