package workerproc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/polyswarm/psengine/internal/child"
	"github.com/polyswarm/psengine/internal/sandbox"
	"github.com/polyswarm/psengine/pipeline"
)

// Handler is a worker child's side of the engine.
type Handler interface {
	// Setup rebuilds the engine's Env from env (Generation.Env) and runs
	// the worker's setup; temp, when not empty, is the child's private
	// temp directory (sandboxed). An error ends the child.
	Setup(env []byte, temp string) error
	// Scan scans a, bounded by ctx, which ends at the request's deadline
	// (the error is then errors.Is context.DeadlineExceeded) or when the
	// parent cancels the scan.
	Scan(ctx context.Context, a Artifact) Result
	// Teardown runs the worker's teardown when the parent retires the
	// child.
	Teardown()
}

// ErrCancelled is the cause of a scan's ctx when the parent cancelled it.
var ErrCancelled = errors.New("psengine: the engine cancelled the scan")

// Serve runs a worker child's life when this process is one for the engine
// named name (ok true; it returns the process's exit status), and returns
// at once otherwise: receive the Env, confine itself when the parent says
// so (before any of the scanner's code runs), set up (h.Setup), scan what
// the parent sends, one at a time, until the parent closes the stream (or
// dies), then tear down. deadline is the cause of a ctx ended by a
// request's deadline.
func Serve(name string, h Handler, log *slog.Logger, deadline error) (exit int, ok bool) {
	c, ok, err := child.Attach(name)
	if !ok {
		return 0, false
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "psengine:", err)
		return 3, true
	}
	var m toChild
	if err := c.Recv(&m); err != nil || m.Hello == nil {
		log.Error("worker child: no hello from the parent", "err", err)
		return 3, true
	}
	var report *sandbox.Report
	temp := ""
	if sh := m.Hello.Sandbox; sh != nil {
		r, err := sandbox.Apply(sh.Policy)
		if err != nil {
			_ = c.Send(fromChild{Ready: &ready{Err: err.Error()}})
			return 4, true
		}
		report, temp = &r, sh.Temp
	}
	if err := h.Setup(m.Hello.Env, temp); err != nil {
		_ = c.Send(fromChild{Ready: &ready{Err: err.Error()}})
		return 4, true
	}
	if err := c.Send(fromChild{Ready: &ready{Sandbox: report}}); err != nil {
		return 3, true
	}

	// One goroutine reads the parent's scans and runs each at once, with
	// no hand-over; a runtime.Goexit in a scan ends it, and the next one
	// reads on. Cancels come on the control stream, which a watcher reads
	// meanwhile.
	r := &reader{h: h, c: c, deadline: deadline, cancels: map[uint64]context.CancelCauseFunc{}}
	go r.watch()
	for {
		ended := false
		done := make(chan struct{})
		go func() {
			defer close(done)
			ended = r.loop()
		}()
		<-done
		if ended {
			break
		}
	}
	h.Teardown()
	_ = c.Close()
	return 0, true
}

// reader reads a worker child's messages and runs its scans.
type reader struct {
	h        Handler
	c        *child.Conn
	deadline error
	mu       sync.Mutex
	cancels  map[uint64]context.CancelCauseFunc
}

// loop runs the scans the parent sends, one after the other, until the
// parent ends the stream (true), or a scan calls runtime.Goexit (then
// loop does not return).
func (r *reader) loop() bool {
	for {
		var m toChild
		if err := r.c.Recv(&m); err != nil {
			return true // the parent retires us (or is gone)
		}
		if m.Scan != nil {
			r.scan(*m.Scan)
		}
	}
}

// watch cancels the scans the parent asks to, until the control stream ends.
func (r *reader) watch() {
	for {
		var m toChild
		if err := r.c.RecvControl(&m); err != nil {
			return
		}
		r.mu.Lock()
		if cancel := r.cancels[m.Cancel]; cancel != nil {
			cancel(ErrCancelled)
		}
		r.mu.Unlock()
	}
}

// scan runs one scan and sends its result, also when the scan calls
// runtime.Goexit (from a deferred call: the goroutine then ends).
func (r *reader) scan(req scanRequest) {
	ctx, cancel := context.WithCancelCause(context.Background())
	r.mu.Lock()
	r.cancels[req.ID] = cancel
	r.mu.Unlock()
	res := scanResult{ID: req.ID, Result: Result{Err: &Error{Message: pipeline.ErrGoexit.Error(), Goexit: true}}}
	defer func() {
		r.mu.Lock()
		delete(r.cancels, req.ID)
		r.mu.Unlock()
		cancel(nil)
		_ = r.c.Send(fromChild{Result: &res})
	}()
	if !req.Deadline.IsZero() {
		var stop context.CancelFunc
		ctx, stop = context.WithDeadlineCause(ctx, req.Deadline, r.deadline)
		defer stop()
	}
	res.Result = r.h.Scan(ctx, req.Artifact)
}
