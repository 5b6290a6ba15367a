package psengine

import (
	"context"
	"fmt"
	"sync"
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

// bountyRun is the context of one bounty's fetch and scan, and its
// watchdog. It is one allocation on the hot path: a cancel-with-cause
// context, the deadline and a timer that, at the deadline, cancels the
// context with ErrTimeout and, ScanGrace later, settles the bounty for a
// scan that has not returned (see overrun).
//
// The goroutine processing the bounty claims it with claim() once the scan
// returned; the watchdog claims it in overrun. Exactly one of them answers.
type bountyRun struct {
	context.Context // cancelled with ErrTimeout, ErrShutdown or the parent's cause
	cancel          context.CancelCauseFunc
	deadline        time.Time // the earliest of ours and the parent's (zero: none)

	e      *Engine
	w      *worker
	parent context.Context // the caller's (or consumer's) context
	bounty Bounty
	grace  time.Duration

	state atomic.Int32 // runScanning, runByProcess or runByWatchdog

	mu      sync.Mutex // guards what follows
	timer   *time.Timer
	expired bool // the context was cancelled by the watchdog or Shutdown

	// Set by the watchdog when it settles the bounty, before closing settled.
	result  Result
	settled chan struct{}
}

// Deadline reports the scan's deadline (the context's own Deadline would
// report none: it is cancelled by the run's timer).
func (r *bountyRun) Deadline() (time.Time, bool) { return r.deadline, !r.deadline.IsZero() }

// newRun starts the run of b on w, with the scan deadline of b at now.
func (e *Engine) newRun(parent context.Context, w *worker, b Bounty, now time.Time) *bountyRun {
	r := &bountyRun{e: e, w: w, parent: parent, bounty: b, grace: e.grace()}
	r.Context, r.cancel = context.WithCancelCause(parent)
	own := e.scanDeadline(b, now)
	r.deadline = own
	if pd, ok := parent.Deadline(); ok && (own.IsZero() || pd.Before(own)) {
		r.deadline = pd
	}
	if !own.IsZero() {
		r.mu.Lock() // tick reads the timer
		r.timer = time.AfterFunc(own.Sub(now), r.tick)
		r.mu.Unlock()
	}
	w.mu.Lock()
	w.run = r
	w.mu.Unlock()
	if e.hard.Err() != nil { // Shutdown gave up before w.run was set
		r.expire(ErrShutdown)
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

// tick is the run's timer: first the deadline, then the end of the grace.
func (r *bountyRun) tick() {
	r.mu.Lock()
	if r.state.Load() != runScanning {
		r.mu.Unlock()
		return
	}
	if !r.expired {
		r.expired = true
		r.cancel(ErrTimeout)
		r.timer.Reset(r.grace)
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	r.overrun()
}

// expire cancels the run with cause (unless it was cancelled already) and
// gives the scan the grace to return before the watchdog settles it.
func (r *bountyRun) expire(cause error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state.Load() != runScanning {
		return
	}
	r.cancel(cause)
	if r.expired {
		return // the grace is running already
	}
	r.expired = true
	if r.timer == nil {
		r.timer = time.AfterFunc(r.grace, r.tick)
	} else {
		r.timer.Reset(r.grace)
	}
}

// claim is called by the goroutine processing the bounty once fetch and
// scan returned: true means it answers; false means the watchdog settled the
// bounty already (see wait). Either way the run's timer is stopped and the
// worker forgets the run.
func (r *bountyRun) claim() bool {
	won := r.state.CompareAndSwap(runScanning, runByProcess)
	r.mu.Lock()
	if r.timer != nil {
		r.timer.Stop()
	}
	r.mu.Unlock()
	r.w.mu.Lock()
	r.w.run = nil
	r.w.mu.Unlock()
	return won
}

// setBounty names the bounty of a run started before its bounty was known
// (a local input: the bounty is forged from the fetched content).
func (r *bountyRun) setBounty(b Bounty) {
	r.mu.Lock()
	r.bounty = b
	r.mu.Unlock()
}

// wait returns the result the watchdog settled the bounty with (after a
// failed claim: the scan has returned).
func (r *bountyRun) wait() Result {
	<-r.settled
	r.e.stuck.Add(-1)
	return r.result
}

// overrun settles a bounty whose scan did not return within the grace
// after its context was cancelled: past its deadline, it is answered unknown
// (delivered, hooks run) as if the scan had returned ErrTimeout; stopped by
// Shutdown, it is reported unanswered. The worker's in-flight token is
// released, so Shutdown does not wait for the scan; the worker itself stays
// busy until the scan returns.
func (r *bountyRun) overrun() {
	r.mu.Lock()
	if r.settled != nil {
		r.mu.Unlock()
		return
	}
	settled := make(chan struct{})
	r.settled = settled // published to claim() by the CAS
	won := r.state.CompareAndSwap(runScanning, runByWatchdog)
	b := r.bounty
	r.mu.Unlock()
	if !won {
		return
	}
	e, ctx := r.e, r.parent
	cause := context.Cause(r)
	res := Result{Bounty: b}
	late := fmt.Errorf("the scan did not return %v after its context was cancelled", r.grace)
	if cause == ErrTimeout {
		res.Err = fmt.Errorf("%w: %w", ErrTimeout, late)
		e.conclude(ctx, &task{bounty: b}, &res)
	} else {
		res.Err = fmt.Errorf("bounty abandoned before its answer: %w (%w)", cause, late)
		e.finish(ctx, &res, e.cfg.logger)
	}
	r.result = res
	e.stuck.Add(1)
	r.w.releaseToken(e)
	close(settled)
}
