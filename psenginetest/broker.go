package psenginetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/google/go-cmp/cmp"
	"github.com/polyswarm/psengine"
)

// BrokerHarness is a fresh, empty broker under test and what TestBroker
// needs to observe it.
type BrokerHarness struct {
	Broker broker.Broker
	// DeadLetters returns the jobs dead-lettered so far.
	DeadLetters func(ctx context.Context) ([]broker.DeadLetter, error)
	// MaxAttempts is the broker's delivery limit (keep it small, e.g. 3).
	MaxAttempts int
	// Keys says that the broker drops a job whose Key it has taken before
	// (see broker.Job.Key), which the Broker contract asks of every
	// broker: TestBroker then checks it. It is a field only so that a
	// broker written before keys existed keeps passing while it learns
	// them; new brokers set it.
	Keys bool
}

// brokerWait bounds how long TestBroker waits for a distributed broker to
// deliver; it only fails tests that would otherwise hang.
const brokerWait = 30 * time.Second

// TestBroker is the conformance suite every Broker passes: the in-process
// broker.Memory and distributed ones alike. newHarness is called once per
// subtest and must return a fresh, empty broker whose redelivery backoff is
// short (milliseconds).
//
// It checks that every submitted job is delivered at least once; that an
// error redelivers the job with its attempt count raised; that a permanent
// error dead-letters it at once; that an exhausted limit gives the job a
// last call (Job.Final) and then dead-letters it; that duplicate IDs are
// refused with ErrDuplicate; that a cancelled consumer loses no
// acknowledged work (it is not redelivered), hands unacknowledged work back
// to the next consumer without counting an attempt, takes no new job once
// its context is done, and calls no handler after it returns; that Close
// stops intake and Drain waits for the jobs held. With BrokerHarness.Keys
// it checks that a job whose Key was taken is refused; for a broker that is
// a broker.AnswerKeeper, that a kept answer comes back with the job's
// redelivery and is forgotten once the job is acknowledged; for a
// broker.DeadLetterStore, that a dead letter can be requeued and dropped.
func TestBroker(t *testing.T, newHarness func(t *testing.T) BrokerHarness) {
	t.Run("delivers every job", func(t *testing.T) {
		h := newHarness(t)
		const n = 50
		for i := range n {
			submit(t, h.Broker, fmt.Sprintf("job-%d", i))
		}
		rec := consume(t, h.Broker, 3, func(context.Context, broker.Job) error { return nil })
		for i := range n {
			rec.await(t, fmt.Sprintf("job-%d", i), 1)
		}
		rec.stop(t)
		for i := range n {
			if a := rec.attempts(fmt.Sprintf("job-%d", i)); a[0] != 1 {
				t.Errorf("job-%d: first delivery has attempt %d, want 1", i, a[0])
			}
		}
	})

	t.Run("error redelivers with the attempt raised", func(t *testing.T) {
		h := newHarness(t)
		submit(t, h.Broker, "flaky")
		rec := consume(t, h.Broker, 1, func(_ context.Context, j broker.Job) error {
			if j.Attempt == 1 {
				return errors.New("transient")
			}
			return nil
		})
		rec.await(t, "flaky", 2)
		rec.stop(t)
		if a := rec.attempts("flaky"); a[0] != 1 || a[1] != 2 {
			t.Errorf("attempts %v, want [1 2 ...]", a)
		}
	})

	t.Run("permanent error dead-letters at once", func(t *testing.T) {
		h := newHarness(t)
		submit(t, h.Broker, "poison")
		rec := consume(t, h.Broker, 1, func(context.Context, broker.Job) error {
			return psengine.Permanent(errors.New("cannot ever work"))
		})
		dl := awaitDeadLetter(t, h, "poison")
		rec.stop(t)
		if got := len(rec.attempts("poison")); got != 1 {
			t.Errorf("handler called %d times for a permanent error, want 1", got)
		}
		if dl.Err == nil {
			t.Errorf("dead letter has no reason: %+v", dl)
		}
	})

	t.Run("exhausted limit gives a last call, then dead-letters", func(t *testing.T) {
		h := newHarness(t)
		if h.MaxAttempts < 1 {
			t.Fatal("BrokerHarness.MaxAttempts must be set")
		}
		submit(t, h.Broker, "doomed")
		var mu sync.Mutex
		var finals []string
		rec := consume(t, h.Broker, 1, func(_ context.Context, j broker.Job) error {
			mu.Lock()
			finals = append(finals, j.Final)
			mu.Unlock()
			if j.Final != "" {
				return nil // answered unknown: dead-lettered all the same
			}
			return errors.New("always fails")
		})
		dl := awaitDeadLetter(t, h, "doomed")
		rec.stop(t)
		if got := len(rec.attempts("doomed")); got != h.MaxAttempts+1 {
			t.Errorf("handler called %d times, want MaxAttempts=%d and a last call", got, h.MaxAttempts)
		}
		mu.Lock()
		defer mu.Unlock()
		for i, f := range finals {
			if last := i == len(finals)-1; last != (f != "") {
				t.Errorf("delivery %d of %d: Final %q", i+1, len(finals), f)
			}
		}
		if dl.Err == nil || !strings.Contains(dl.Err.Error(), "always fails") {
			t.Errorf("dead letter's reason %v, want the last failure", dl.Err)
		}
	})

	t.Run("duplicates refused", func(t *testing.T) {
		h := newHarness(t)
		submit(t, h.Broker, "once")
		submitDuplicate(t, h.Broker, "once")
		submit(t, h.Broker, "other")
		rec := consume(t, h.Broker, 2, func(context.Context, broker.Job) error { return nil })
		rec.await(t, "once", 1)
		rec.await(t, "other", 1)
		submitDuplicate(t, h.Broker, "once") // recently handled: still a duplicate
		submit(t, h.Broker, "last")
		rec.await(t, "last", 1)
		rec.stop(t)
		if got := len(rec.attempts("once")); got != 1 {
			t.Errorf("duplicate job handled %d times, want 1", got)
		}
	})

	t.Run("a job with a Key already taken is dropped", func(t *testing.T) {
		h := newHarness(t)
		if !h.Keys {
			t.Skip("BrokerHarness.Keys is false: this broker does not deduplicate by Key yet")
		}
		submitKeyed(t, h.Broker, "first", "same-bounty", nil)
		submitKeyed(t, h.Broker, "replay", "same-bounty", psengine.ErrDuplicate) // a new delivery id, the same content
		submitKeyed(t, h.Broker, "different", "other-bounty", nil)
		var mu sync.Mutex
		keys := map[string]string{}
		rec := consume(t, h.Broker, 2, func(_ context.Context, j broker.Job) error {
			mu.Lock()
			keys[j.ID] = j.Key
			mu.Unlock()
			return nil
		})
		rec.await(t, "first", 1)
		rec.await(t, "different", 1)
		submitKeyed(t, h.Broker, "late replay", "same-bounty", psengine.ErrDuplicate) // handled, not yet expired: still taken
		submitKeyed(t, h.Broker, "last", "last-bounty", nil)
		rec.await(t, "last", 1)
		rec.stop(t)
		for _, id := range []string{"replay", "late replay"} {
			if got := len(rec.attempts(id)); got != 0 {
				t.Errorf("job %q with a Key already taken handled %d times, want 0", id, got)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if keys["first"] != "same-bounty" || keys["different"] != "other-bounty" {
			t.Errorf("delivered keys %q, want the submitted ones", keys)
		}
	})

	t.Run("a kept answer comes back with the redelivery", func(t *testing.T) {
		h := newHarness(t)
		keeper, ok := h.Broker.(broker.AnswerKeeper)
		if !ok {
			t.Skip("the broker is not a broker.AnswerKeeper")
		}
		kept := psengine.Analysis{Verdict: psengine.Malicious, Confidence: 0.75, Bid: 123456789,
			Metadata: psengine.Metadata{MalwareFamily: "Test.Kept", Comments: []string{"kept"}}}
		submit(t, h.Broker, "kept")
		submit(t, h.Broker, "unkept")
		var mu sync.Mutex
		answers := map[string][]*psengine.Analysis{}
		var acked broker.Job
		rec := consume(t, h.Broker, 1, func(ctx context.Context, j broker.Job) error {
			mu.Lock()
			answers[j.ID] = append(answers[j.ID], j.Answer)
			mu.Unlock()
			if j.Attempt > 1 {
				if j.ID == "kept" {
					mu.Lock()
					acked = j
					mu.Unlock()
				}
				return nil
			}
			if j.ID == "kept" {
				if err := keeper.KeepAnswer(ctx, j, kept); err != nil {
					t.Errorf("KeepAnswer: %v", err)
				}
			}
			return errors.New("the delivery failed")
		})
		rec.await(t, "kept", 2)
		rec.await(t, "unkept", 2)
		rec.stop(t)
		mu.Lock()
		defer mu.Unlock()
		if got := answers["kept"]; got[0] != nil {
			t.Errorf("first delivery carries an answer: %+v", *got[0])
		}
		if got := answers["kept"]; got[1] == nil {
			t.Error("the redelivery carries no answer, want the kept one")
		} else if diff := cmp.Diff(kept, *got[1], AnalysisOptions); diff != "" {
			t.Errorf("the redelivery's answer (-kept +got):\n%s", diff)
		}
		for i, a := range answers["unkept"] {
			if a != nil {
				t.Errorf("delivery %d of a job whose answer was never kept carries %+v", i+1, *a)
			}
		}
		// Acknowledged: the job and its answer are gone.
		if err := keeper.KeepAnswer(context.Background(), acked, kept); err == nil {
			t.Error("KeepAnswer on an acknowledged job succeeded, want an error (nothing pending to keep it with)")
		}
	})

	t.Run("cancelled consumer", func(t *testing.T) {
		h := newHarness(t)
		submit(t, h.Broker, "acked")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var mu sync.Mutex
		var calls []string
		returned := false
		done := make(chan error, 1)
		go func() {
			done <- h.Broker.Consume(ctx, func(ctx context.Context, j broker.Job) error {
				mu.Lock()
				defer mu.Unlock()
				if returned {
					t.Errorf("handler called for %s after Consume returned", j.ID)
				}
				calls = append(calls, j.ID)
				if j.ID == "unacked" {
					cancel()
					return ctx.Err()
				}
				return nil
			})
		}()
		Eventually(t, "the acked job", func() bool { mu.Lock(); defer mu.Unlock(); return len(calls) >= 1 })
		submit(t, h.Broker, "unacked")
		select {
		case <-done:
		case <-time.After(brokerWait):
			t.Fatal("Consume did not return after its context was cancelled")
		}
		mu.Lock()
		returned = true
		mu.Unlock()

		submit(t, h.Broker, "after")
		rec := consume(t, h.Broker, 1, func(context.Context, broker.Job) error { return nil })
		rec.await(t, "unacked", 1)
		rec.await(t, "after", 1)
		rec.stop(t)
		if got := rec.attempts("acked"); len(got) != 0 {
			t.Errorf("acknowledged job redelivered %d times", len(got))
		}
		if got := rec.attempts("unacked"); got[0] != 1 {
			t.Errorf("a job handed back by its cancelled consumer came back as attempt %d, want 1 (not a failure of the job)", got[0])
		}
	})

	t.Run("a consumer whose context is done takes no job", func(t *testing.T) {
		h := newHarness(t)
		submit(t, h.Broker, "waiting")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := h.Broker.Consume(ctx, func(_ context.Context, j broker.Job) error {
			t.Errorf("a consumer whose context is done took %s", j.ID)
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Consume with a done context returned %v, want context.Canceled", err)
		}
		rec := consume(t, h.Broker, 1, func(context.Context, broker.Job) error { return nil })
		rec.await(t, "waiting", 1)
		rec.stop(t)
		if got := rec.attempts("waiting"); got[0] != 1 {
			t.Errorf("attempt %d, want 1", got[0])
		}
	})

	t.Run("hand-backs are never attempts", func(t *testing.T) {
		h := newHarness(t)
		if h.MaxAttempts < 1 {
			t.Fatal("BrokerHarness.MaxAttempts must be set")
		}
		submit(t, h.Broker, "interrupted")
		// More hand-backs than attempts allowed: none counts.
		for i := range h.MaxAttempts + 1 {
			ctx, cancel := context.WithCancel(context.Background())
			err := h.Broker.Consume(ctx, func(ctx context.Context, j broker.Job) error {
				if j.Attempt != 1 || j.Final != "" {
					t.Errorf("hand-back %d: attempt %d, Final %q; want attempt 1 and no last call", i, j.Attempt, j.Final)
				}
				cancel() // our own stop, as Shutdown's deadline would
				return context.Cause(ctx)
			})
			cancel()
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Consume: %v", err)
			}
		}
		rec := consume(t, h.Broker, 1, func(context.Context, broker.Job) error { return nil })
		rec.await(t, "interrupted", 1)
		rec.stop(t)
		if got := rec.attempts("interrupted"); got[0] != 1 {
			t.Errorf("after %d hand-backs: attempt %d, want 1", h.MaxAttempts+1, got[0])
		}
		if dls, err := h.DeadLetters(context.Background()); err != nil || len(dls) != 0 {
			t.Errorf("dead letters %v (%v), want none", dls, err)
		}
	})

	t.Run("Close stops intake; Drain waits for the jobs held", func(t *testing.T) {
		h := newHarness(t)
		submit(t, h.Broker, "held")
		release := make(chan struct{})
		rec := consume(t, h.Broker, 1, func(context.Context, broker.Job) error { <-release; return nil })
		rec.await(t, "held", 1)
		h.Broker.Close()
		h.Broker.Close() // idempotent
		bounty := Bounty([]byte("late"), WithID("late"))
		if err := h.Broker.Submit(context.Background(), broker.Job{ID: "late", Bounty: bounty}); !errors.Is(err, psengine.ErrClosed) {
			t.Errorf("Submit after Close: %v, want ErrClosed", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		if err := h.Broker.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Drain with a job held: %v, want its context's error", err)
		}
		cancel()
		close(release)
		ctx, cancel = context.WithTimeout(context.Background(), brokerWait)
		defer cancel()
		if err := h.Broker.Drain(ctx); err != nil {
			t.Errorf("Drain once the job was settled: %v", err)
		}
		rec.stop(t)
	})

	t.Run("dead letters requeued and dropped", func(t *testing.T) {
		h := newHarness(t)
		store, ok := h.Broker.(broker.DeadLetterStore)
		if !ok {
			t.Skip("the broker is not a broker.DeadLetterStore")
		}
		submit(t, h.Broker, "requeued")
		submit(t, h.Broker, "dropped")
		var mu sync.Mutex
		fixed := false
		rec := consume(t, h.Broker, 1, func(_ context.Context, j broker.Job) error {
			mu.Lock()
			defer mu.Unlock()
			if fixed && j.ID == "requeued" {
				if j.Attempt != 1 || j.Final != "" {
					t.Errorf("requeued job: attempt %d, Final %q; want a fresh start", j.Attempt, j.Final)
				}
				return nil
			}
			return psengine.Permanent(errors.New("broken for now"))
		})
		awaitDeadLetter(t, h, "requeued")
		awaitDeadLetter(t, h, "dropped")
		mu.Lock()
		fixed = true
		mu.Unlock()
		ctx := context.Background()
		if err := store.Requeue(ctx, "requeued"); err != nil {
			t.Fatalf("Requeue: %v", err)
		}
		rec.await(t, "requeued", 2)
		if err := store.Drop(ctx, "dropped"); err != nil {
			t.Fatalf("Drop: %v", err)
		}
		if err := store.Drop(ctx, "dropped"); !errors.Is(err, broker.ErrNoDeadLetter) {
			t.Errorf("Drop of a dropped dead letter: %v, want ErrNoDeadLetter", err)
		}
		if err := store.Requeue(ctx, "never"); !errors.Is(err, broker.ErrNoDeadLetter) {
			t.Errorf("Requeue of an unknown job: %v, want ErrNoDeadLetter", err)
		}
		Eventually(t, "the requeued job settled", func() bool {
			dls, err := store.DeadLetters(ctx)
			return err == nil && len(dls) == 0
		})
		rec.stop(t)
	})
}

// submitKeyed submits a job with its own bounty (for id) and key; want is
// the error Submit must return (nil, or an error it wraps).
func submitKeyed(t *testing.T, b broker.Broker, id, key string, want error) {
	t.Helper()
	bounty := Bounty([]byte(id), WithID(id))
	err := b.Submit(context.Background(), broker.Job{ID: id, Key: key, Bounty: bounty})
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		t.Fatalf("Submit(%s): %v, want %v", id, err, want)
	}
}

// submitDuplicate submits a job whose ID was taken: Submit must refuse it.
func submitDuplicate(t *testing.T, b broker.Broker, id string) {
	t.Helper()
	bounty := Bounty([]byte(id), WithID(id))
	if err := b.Submit(context.Background(), broker.Job{ID: id, Bounty: bounty}); !errors.Is(err, psengine.ErrDuplicate) {
		t.Fatalf("Submit(%s) again: %v, want ErrDuplicate", id, err)
	}
}

func submit(t *testing.T, b broker.Broker, id string) {
	t.Helper()
	bounty := Bounty([]byte(id), WithID(id))
	if err := b.Submit(context.Background(), broker.Job{ID: id, Bounty: bounty}); err != nil {
		t.Fatalf("Submit(%s): %v", id, err)
	}
}

// recorder runs consumers and records every handler call.
type recorder struct {
	mu     sync.Mutex
	calls  map[string][]int // job ID -> attempts seen
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errs   chan error
}

func consume(t *testing.T, b broker.Broker, n int, h broker.Handler) *recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &recorder{calls: make(map[string][]int), cancel: cancel, errs: make(chan error, n)}
	for range n {
		r.wg.Go(func() {
			err := b.Consume(ctx, func(ctx context.Context, j broker.Job) error {
				r.mu.Lock()
				r.calls[j.ID] = append(r.calls[j.ID], j.Attempt)
				r.mu.Unlock()
				return h(ctx, j)
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				r.errs <- err
			}
		})
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *recorder) attempts(id string) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int{0}[:0], r.calls[id]...)
}

func (r *recorder) await(t *testing.T, id string, calls int) {
	t.Helper()
	Eventually(t, fmt.Sprintf("%d deliveries of %s", calls, id), func() bool { return len(r.attempts(id)) >= calls })
}

func (r *recorder) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	r.wg.Wait()
	select {
	case err := <-r.errs:
		t.Errorf("Consume: %v", err)
	default:
	}
}

func awaitDeadLetter(t *testing.T, h BrokerHarness, id string) broker.DeadLetter {
	t.Helper()
	var found broker.DeadLetter
	Eventually(t, "dead letter "+id, func() bool {
		dls, err := h.DeadLetters(context.Background())
		if err != nil {
			t.Fatalf("DeadLetters: %v", err)
		}
		i := slices.IndexFunc(dls, func(d broker.DeadLetter) bool { return d.Job.ID == id })
		if i >= 0 {
			found = dls[i]
		}
		return i >= 0
	})
	return found
}
