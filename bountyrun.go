package psengine

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// ScanGrace is how long the engine waits, after a bounty's deadline passed
// (or Shutdown gave up on it) and its context was cancelled, for the scan to
// return before it settles the bounty without it: a bounty past its
// deadline is then answered unknown (ErrTimeout), delivered and reported to
// the hooks at once, and one stopped by Shutdown is reported unanswered.
// It is never more than half the delivery margin, so that the answer still
// has time to reach PolySwarm.
const ScanGrace = time.Second

// Who settled a bounty: the goroutine processing it, or the watchdog.
const (
	runScanning int32 = iota
	runByProcess
	runByWatchdog
)

// bountyRun is one bounty on its way through the stages: the context of
// its fetch and scan, the task the stages fill in, and its watchdog. It is
// one allocation on the hot path. The worker's timer (reused from bounty to
// bounty) cancels the context with ErrTimeout at the deadline and, the
// grace later, settles the bounty for a scan that has not returned (see
// overrun).
//
// The goroutine processing the bounty claims it with claim() once the scan
// returned; the watchdog claims it in overrun. Exactly one of them answers.
type bountyRun struct {
	// As a context.Context, the run is its parent until something needs
	// more: Done, or a cancellation (ErrTimeout, ErrShutdown), makes a
	// cancel-with-cause child of the parent that the run then stands for.
	// Most scans of small artifacts never wait on Done: they cost no
	// context allocation.
	parent   context.Context // the caller's (or consumer's) context
	inner    atomic.Pointer[cancelPair]
	deadline time.Time // the earliest of ours and the parent's (zero: none)

	e     *Engine
	w     *worker
	grace time.Duration
	state atomic.Int32 // runScanning, runByProcess or runByWatchdog

	// Guarded by w.mu.
	due     time.Time   // when the watchdog acts next: the deadline, then the end of the grace (zero: never)
	expired bool        // the context was cancelled by the watchdog or Shutdown
	settled *settlement // set by the watchdog when it settles the bounty

	// task is the worker's task, reset for this bounty: a worker runs one
	// bounty at a time, and a scan that overran keeps its worker.
	task *task
	// bounty is the run's bounty (task.bounty points here). setBounty
	// writes it under w.mu; the watchdog reads it under w.mu once it has
	// claimed the run.
	bounty Bounty
}

// settlement is the result the watchdog settled a bounty with; done is
// closed once it is final.
type settlement struct {
	done   chan struct{}
	result Result
}

// cancelPair is a run's cancel-with-cause context.
type cancelPair struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// current is the context the run stands for now.
func (r *bountyRun) current() context.Context {
	if p := r.inner.Load(); p != nil {
		return p.ctx
	}
	return r.parent
}

// cancellable makes (once) and returns the run's cancel-with-cause context.
func (r *bountyRun) cancellable() *cancelPair {
	if p := r.inner.Load(); p != nil {
		return p
	}
	ctx, cancel := context.WithCancelCause(r.parent)
	p := &cancelPair{ctx, cancel}
	if !r.inner.CompareAndSwap(nil, p) {
		cancel(nil) // another goroutine made it first
		return r.inner.Load()
	}
	return p
}

// cancel cancels the run with cause.
func (r *bountyRun) cancel(cause error) { r.cancellable().cancel(cause) }

// release frees what the run's context holds (its registration with the
// parent), once the bounty is done.
func (r *bountyRun) release() {
	if p := r.inner.Load(); p != nil {
		p.cancel(nil)
	}
}

// Done is closed when the run is cancelled: at its deadline, by Shutdown,
// or with its parent.
func (r *bountyRun) Done() <-chan struct{} { return r.cancellable().ctx.Done() }

// Value is the parent's (context.Cause finds the run's cancel cause).
func (r *bountyRun) Value(key any) any { return r.current().Value(key) }

// Err is the context's error, context.DeadlineExceeded once the deadline
// passed (context.Cause says ErrTimeout).
func (r *bountyRun) Err() error {
	c := r.current()
	err := c.Err()
	if err == context.Canceled && context.Cause(c) == ErrTimeout {
		return context.DeadlineExceeded
	}
	return err
}

// Deadline reports the scan's deadline (the context's own Deadline would
// report none: it is cancelled by the worker's timer).
func (r *bountyRun) Deadline() (time.Time, bool) { return r.deadline, !r.deadline.IsZero() }

// newRun starts the run of b on w, with the scan deadline of b at now.
func (e *Engine) newRun(parent context.Context, w *worker, b Bounty, now time.Time) *bountyRun {
	r := &bountyRun{e: e, w: w, parent: parent, grace: e.grace(), task: &w.task, bounty: b}
	*r.task = task{worker: w, bounty: &r.bounty}
	own := e.scanDeadline(b, now)
	r.deadline = own
	if pd, ok := parent.Deadline(); ok && (own.IsZero() || pd.Before(own)) {
		r.deadline = pd
	}
	w.mu.Lock()
	w.run = r
	if !own.IsZero() {
		r.due = own
		w.armLocked(own, now)
	}
	w.mu.Unlock()
	if e.hard.Err() != nil { // Shutdown gave up before w.run was set
		w.expireRun(ErrShutdown)
	}
	return r
}

// grace is ScanGrace, at most half the delivery margin.
func (e *Engine) grace() time.Duration { return min(ScanGrace, e.cfg.margin/2) }

// scanDeadline is the deadline of fetch and scan: the bounty's expiration
// less the delivery margin, and the host's timeout (zero: none).
func (e *Engine) scanDeadline(b Bounty, now time.Time) time.Time {
	var deadline time.Time
	if !b.Expiration.IsZero() {
		deadline = b.Expiration.Add(-e.cfg.margin)
		if !deadline.After(now) {
			// Expired, or too close to expiring, yet scanned anyway
			// (WithDiscardExpired(false)): the answer is late whatever
			// happens, so give the scan LateScanWindow rather than none.
			deadline = now.Add(LateScanWindow)
		}
	}
	if e.cfg.timeout > 0 {
		if d := now.Add(e.cfg.timeout); deadline.IsZero() || d.Before(deadline) {
			deadline = d
		}
	}
	return deadline
}

// armLocked makes sure w's timer fires no later than at. The timer is not
// stopped when a bounty ends: it fires at the earliest deadline it was set
// for, and tick re-arms it for the run then current, if any (a Reset per
// bounty would cost more). w.mu is held.
func (w *worker) armLocked(at, now time.Time) {
	if !w.armedAt.IsZero() && !at.Before(w.armedAt) {
		return // it fires earlier, and tick re-arms for what is due then
	}
	w.armedAt = at
	if w.timer == nil {
		w.timer = time.AfterFunc(at.Sub(now), w.tick)
	} else {
		w.timer.Reset(at.Sub(now))
	}
}

// stopTimer stops w's timer (at shutdown, w idle).
func (w *worker) stopTimer() {
	w.mu.Lock()
	if w.timer != nil {
		w.timer.Stop()
		w.armedAt = time.Time{}
	}
	w.mu.Unlock()
}

// tick is w's timer: at the deadline of w's run it cancels the run's
// context with ErrTimeout and re-arms for the grace; at the end of the grace
// it settles the run (overrun). Before the run's due time it only re-arms.
func (w *worker) tick() {
	now := time.Now()
	w.mu.Lock()
	w.armedAt = time.Time{}
	r := w.run
	if r == nil || r.due.IsZero() || r.state.Load() != runScanning {
		w.mu.Unlock()
		return
	}
	if now.Before(r.due) {
		w.armLocked(r.due, now)
		w.mu.Unlock()
		return
	}
	if !r.expired {
		w.expireLocked(r, ErrTimeout, now)
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	r.overrun()
}

// expireLocked cancels r with cause (unless it was cancelled already) and,
// the first time, starts its grace. w.mu is held.
func (w *worker) expireLocked(r *bountyRun, cause error, now time.Time) {
	r.cancel(cause)
	if !r.expired {
		r.expired = true
		r.due = now.Add(r.grace)
		w.armLocked(r.due, now)
	}
}

// expireRun cancels w's running bounty, if any, with cause (unless it was
// cancelled already) and gives its scan the grace to return before the
// watchdog settles it.
func (w *worker) expireRun(cause error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if r := w.run; r != nil && r.state.Load() == runScanning {
		w.expireLocked(r, cause, time.Now())
	}
}

// claim is called by the goroutine processing the bounty once fetch and
// scan returned: true means it answers; false means the watchdog settled the
// bounty already (see wait). Either way the worker forgets the run.
func (r *bountyRun) claim() bool {
	won := r.state.CompareAndSwap(runScanning, runByProcess)
	w := r.w
	w.mu.Lock()
	w.run = nil
	w.mu.Unlock()
	return won
}

// setBounty names the bounty of a run started before its bounty was known
// (a local input: the bounty is forged from the fetched content).
func (r *bountyRun) setBounty(b Bounty) {
	r.w.mu.Lock()
	r.bounty = b
	r.w.mu.Unlock()
}

// wait returns the result the watchdog settled the bounty with (after a
// failed claim: the scan has returned).
func (r *bountyRun) wait() Result {
	<-r.settled.done
	r.e.stuck.Add(-1)
	return r.settled.result
}

// overrun settles a bounty whose scan did not return within the grace
// after its context was cancelled: past its deadline, it is answered unknown
// (delivered, hooks run) as if the scan had returned ErrTimeout; stopped by
// Shutdown, it is reported unanswered. The worker's in-flight token is
// released, so Shutdown does not wait for the scan; the worker itself stays
// busy until the scan returns.
func (r *bountyRun) overrun() {
	w := r.w
	w.mu.Lock()
	if r.settled != nil {
		w.mu.Unlock()
		return
	}
	s := &settlement{done: make(chan struct{})}
	r.settled = s // published to claim() by the CAS
	won := r.state.CompareAndSwap(runScanning, runByWatchdog)
	if !won {
		w.mu.Unlock()
		return
	}
	b := r.bounty
	w.mu.Unlock()
	e, ctx := r.e, r.parent
	cause := context.Cause(r)
	res := Result{Bounty: b}
	late := fmt.Errorf("the scan did not return %v after its context was cancelled", r.grace)
	if cause == ErrTimeout {
		res.Err = fmt.Errorf("%w: %w", ErrTimeout, late)
		e.conclude(ctx, &task{bounty: &b}, &res)
	} else {
		res.Err = fmt.Errorf("bounty abandoned before its answer: %w (%w)", cause, late)
		e.finish(ctx, &res, e.cfg.logger)
	}
	s.result = res
	e.stuck.Add(1)
	w.releaseToken(e)
	close(s.done)
}
