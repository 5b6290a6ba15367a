// Package jobq is the one in-memory job dispatcher of psengine's brokers:
// broker.Memory and localq, which adds its store's writes through a
// Store. It hands pending jobs to consumers, settles each after its handler
// (done, retried after a backoff, handed back, given a last call, dead),
// and gives a broker its lifecycle (Close, Drain, Abandon).
//
// The rules, the same for every broker built on it:
//   - A consumer whose context is done takes no new job.
//   - A job whose handler fails while its consumer's context is done was cut
//     short by our own stop, not by a fault of its own: it is handed back
//     (queued again at the front) and its attempt is not raised.
//   - Any other failure raises the attempt and delivers the job again after
//     a backoff, up to MaxAttempts; the job that fails its last attempt gets
//     a last call: it is delivered once more with Entry.Final set (so that
//     the engine answers it without another try), then dead-lettered with
//     that reason whatever its handler returns (a hand-back excepted).
//   - An error marked permanent dead-letters the job at once.
//   - A job marked Alone (a suspect: it was being handled when a process
//     died) is handed out only once no other job is out, and nothing else
//     is handed out until its settlement or Lift: a second death is then
//     its own, and no neighbour's answer is lost between its delivery and
//     its settlement.
//
// The package knows nothing of bounties: a job is an opaque J.
package jobq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/polyswarm/psengine/pipeline"
)

// Entry is one job in a Queue. The queue owns it while the job is pending;
// a handler reads it and must not keep it.
type Entry[J any] struct {
	ID      string
	Seq     uint64 // the job's place in arrival order (a store's key)
	Attempt int    // 1 on the first delivery
	// Final, when set, makes this delivery the job's last: it is
	// dead-lettered after it with this reason.
	Final string
	// Alone: the job is handed out alone (see the package documentation).
	Alone bool
	Job   J
}

// Settlement is what becomes of a job after a delivery.
type Settlement int

const (
	// Done: acknowledged; the job is forgotten.
	Done Settlement = iota
	// Retry: failed; delivered again after a backoff with its attempt raised.
	Retry
	// HandBack: cut short by its consumer's stop; queued again as it was.
	HandBack
	// LastCall: failed its last attempt; delivered once more with Final set.
	LastCall
	// Dead: given up on.
	Dead
)

func (s Settlement) String() string {
	switch s {
	case Done:
		return "done"
	case Retry:
		return "retry"
	case HandBack:
		return "hand-back"
	case LastCall:
		return "last call"
	case Dead:
		return "dead"
	}
	return fmt.Sprintf("Settlement(%d)", int(s))
}

// Decide settles a delivery of e whose handler returned err, its consumer's
// context being done or not, under the package's rules. For Dead it also
// returns the reason; for Retry and LastCall, the failure.
func Decide[J any](e *Entry[J], err error, stopped bool, maxAttempts int) (Settlement, error) {
	switch {
	case err != nil && stopped && !errors.Is(err, pipeline.ErrPermanent):
		return HandBack, err
	case e.Final != "":
		return Dead, errors.New(e.Final)
	case err == nil:
		return Done, nil
	case errors.Is(err, pipeline.ErrPermanent):
		return Dead, err
	case e.Attempt >= maxAttempts:
		return LastCall, fmt.Errorf("gave up after %d attempts: %w", e.Attempt, err)
	}
	return Retry, err
}

// Store records settlements before the queue acts on them (localq's
// bbolt writes). Settle is called with the entry as it will be next (for
// Retry, its attempt raised; for LastCall, its Final set) and, for Dead,
// the reason. An error leaves the store as it was; the queue goes on (the
// store's copy is what the next process sees).
type Store[J any] interface {
	Settle(e *Entry[J], s Settlement, reason error) error
}

// Config configures a Queue.
type Config[J any] struct {
	MaxAttempts int              // deliveries before the last call (>= 1)
	Backoff     pipeline.Backoff // the wait before a retry
	Store       Store[J]         // nil: nothing recorded
	// OnSettled, when set, is called after each settlement is applied
	// (outside the queue's lock): with Dead, the reason.
	OnSettled func(e *Entry[J], s Settlement, reason error)
}

// Queue dispatches jobs to consumers. Make one with New; it is safe for
// concurrent use.
type Queue[J any] struct {
	cfg Config[J]

	mu        sync.Mutex
	ready     []*Entry[J] // queued for delivery, in order
	wake      chan struct{}
	pending   map[string]*Entry[J] // queued, running or waiting for a retry
	timers    map[*time.Timer]*Entry[J]
	idle      chan struct{} // closed while nothing is pending
	closed    bool          // no new jobs
	abandoned bool          // no more deliveries
	out       int           // jobs handed out and not settled
	alone     *Entry[J]     // a job handed out alone and not yet lifted
}

// New returns an empty, open queue.
func New[J any](cfg Config[J]) *Queue[J] {
	cfg.MaxAttempts = max(cfg.MaxAttempts, 1)
	idle := make(chan struct{})
	close(idle)
	return &Queue[J]{
		cfg:     cfg,
		wake:    make(chan struct{}, 1),
		pending: make(map[string]*Entry[J]),
		timers:  make(map[*time.Timer]*Entry[J]),
		idle:    idle,
	}
}

// signal wakes a waiting consumer (each passes the signal on while jobs
// are left). Callers hold q.mu or do not care.
func (q *Queue[J]) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Add queues e, a job the broker accepted (and recorded). It returns false,
// and does not queue it, once the queue is closed, unless it was abandoned:
// then the job, recorded by the broker, waits in its store for the next
// process. A job whose ID is pending is the caller's to refuse.
func (q *Queue[J]) Add(e *Entry[J]) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.abandoned:
		return true
	case q.closed:
		return false
	}
	e.Attempt = max(e.Attempt, 1)
	q.addLocked(e)
	return true
}

// Restore queues jobs a store held at start (before any consumer runs), in
// the given order.
func (q *Queue[J]) Restore(es []*Entry[J]) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range es {
		e.Attempt = max(e.Attempt, 1)
		q.addLocked(e)
	}
}

func (q *Queue[J]) addLocked(e *Entry[J]) {
	if len(q.pending) == 0 {
		q.idle = make(chan struct{})
	}
	q.pending[e.ID] = e
	q.ready = append(q.ready, e)
	q.signal()
}

// Pending reports whether a job with that ID is pending.
func (q *Queue[J]) Pending(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok := q.pending[id]
	return ok
}

// Update calls fn with the pending entry of that ID under the queue's lock
// and reports whether there was one.
func (q *Queue[J]) Update(id string, fn func(*Entry[J])) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.pending[id]
	if ok {
		fn(e)
	}
	return ok
}

// Len returns the number of jobs pending: queued, running or waiting for a
// retry.
func (q *Queue[J]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// next takes the next job, waiting for one. It returns ctx's error, taking
// nothing, once ctx is done; ok is false once the queue is closed and has
// nothing pending, or is abandoned.
func (q *Queue[J]) next(ctx context.Context) (e *Entry[J], ok bool, err error) {
	for {
		if err := ctx.Err(); err != nil {
			q.signal() // pass a wake-up this consumer may have taken on
			return nil, false, err
		}
		q.mu.Lock()
		switch {
		case q.abandoned:
			q.mu.Unlock()
			q.signal()
			return nil, false, nil
		case len(q.ready) > 0 && q.alone == nil && (!q.ready[0].Alone || q.out == 0):
			e := q.ready[0]
			q.ready[0] = nil
			q.ready = q.ready[1:]
			q.out++
			if e.Alone {
				q.alone = e
			} else if len(q.ready) > 0 {
				q.signal() // let another consumer take the next one
			}
			q.mu.Unlock()
			return e, true, nil
		case q.closed && len(q.pending) == 0:
			q.mu.Unlock()
			q.signal() // wake the other consumers so they see it too
			return nil, false, nil
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-q.wake:
		}
	}
}

// Consume calls h for each job delivered to it, one at a time, until ctx
// ends (it returns ctx's error once h returned) or the queue is closed and
// drained, or abandoned (it returns nil). A panic in h is a failure of the
// job. See the package documentation for how each delivery is settled.
func (q *Queue[J]) Consume(ctx context.Context, h func(context.Context, *Entry[J]) error) error {
	for {
		e, ok, err := q.next(ctx)
		if err != nil || !ok {
			return err
		}
		var herr error
		if perr := pipeline.Protect(func() { herr = h(ctx, e) }); perr != nil {
			herr = perr
		}
		s, reason := Decide(e, herr, ctx.Err() != nil, q.cfg.MaxAttempts)
		q.Settle(e, s, reason)
	}
}

// Settle applies s to e, a job a consumer took: first in the store, then
// in memory. Consume calls it; a broker that consumes otherwise may too.
func (q *Queue[J]) Settle(e *Entry[J], s Settlement, reason error) {
	next := *e
	switch s {
	case Retry:
		next.Attempt++
	case LastCall:
		next.Final = reason.Error()
	}
	if q.cfg.Store != nil {
		// A failed write leaves the store as it was: the next process
		// delivers the job again (at least once); this one goes on.
		_ = q.cfg.Store.Settle(&next, s, reason)
	}
	q.mu.Lock()
	q.out--
	if q.alone == e {
		q.alone = nil
	}
	q.signal() // a job waiting to be handed out alone may go now
	if s == HandBack || s == LastCall || s == Retry {
		*e = next
	}
	switch {
	case s == Done || s == Dead || q.abandoned:
		q.forgetLocked(e.ID) // abandoned: it waits in the store for the next process
	case s == HandBack || s == LastCall:
		q.ready = append([]*Entry[J]{e}, q.ready...)
		q.signal()
	case s == Retry:
		var t *time.Timer
		t = time.AfterFunc(q.cfg.Backoff.Delay(e.Attempt-1), func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			if _, ok := q.timers[t]; !ok {
				return // abandoned
			}
			delete(q.timers, t)
			q.ready = append(q.ready, e)
			q.signal()
		})
		q.timers[t] = e
	}
	q.mu.Unlock()
	if q.cfg.OnSettled != nil {
		_ = pipeline.Protect(func() { q.cfg.OnSettled(&next, s, reason) })
	}
}

// Lift ends the isolation of the job of that ID handed out alone (its
// danger is over: a broker calls it once the job's answer is kept): other
// jobs are handed out again. It also clears the job's Alone mark.
func (q *Queue[J]) Lift(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if e, ok := q.pending[id]; ok {
		e.Alone = false
	}
	if q.alone != nil && q.alone.ID == id {
		q.alone = nil
		q.signal()
	}
}

// forgetLocked removes a settled job. Callers hold q.mu.
func (q *Queue[J]) forgetLocked(id string) {
	delete(q.pending, id)
	if len(q.pending) == 0 {
		select {
		case <-q.idle:
		default:
			close(q.idle)
		}
	}
	q.signal()
}

// Close stops intake: Add returns false from now on, while pending jobs are
// still delivered; once none is left, Consume returns nil. Idempotent.
func (q *Queue[J]) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// Drain waits until no job is pending, or ctx ends (it returns ctx's
// error).
func (q *Queue[J]) Drain(ctx context.Context) error {
	q.mu.Lock()
	idle := q.idle
	q.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Abandon closes the queue and stops delivering: it returns the jobs no
// consumer holds (queued, or waiting for a retry), which are no longer
// pending (a store keeps them for the next process). Jobs running now are
// settled as usual, except that none is queued again. Consume returns nil.
func (q *Queue[J]) Abandon() []*Entry[J] {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed, q.abandoned = true, true
	out := q.ready
	q.ready = nil
	for t, e := range q.timers {
		t.Stop()
		delete(q.timers, t)
		out = append(out, e)
	}
	for _, e := range out {
		q.forgetLocked(e.ID)
	}
	q.signal()
	return out
}
