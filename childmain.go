package psengine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/polyswarm/psengine/child"
	"github.com/polyswarm/psengine/fetch"
	"github.com/polyswarm/psengine/pipeline"
)

// takeOverAsChild serves the parent when this process is a worker child of
// the engine named e.cfg.name (see WithProcessWorkers), and then exits; it
// returns at once otherwise.
func (e *Engine) takeOverAsChild() {
	c, ok, err := child.Attach(e.cfg.name)
	if !ok {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "psengine:", err)
		os.Exit(3)
	}
	os.Exit(e.serveChild(c))
}

// serveChild is a worker child's life: receive the Env, run WorkerSetup,
// scan what the parent sends, one at a time, until the parent closes the
// stream (or dies), then run WorkerTeardown. Its logs go to stderr as JSON
// records, which the parent logs with the child's pid. It returns the
// process's exit status.
func (e *Engine) serveChild(c *child.Conn) int {
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lowestLevel(e.cfg.logger)}))
	e.cfg.logger = log
	var hello toChild
	if err := c.Recv(&hello); err != nil || hello.Hello == nil {
		log.Error("worker child: no hello from the parent", "err", err)
		return 3
	}
	env, err := hello.Hello.Env.env()
	if err != nil {
		_ = c.Send(fromChild{Ready: &childReady{Err: fmt.Sprintf("the engine's Env: %v", err)}})
		return 4
	}
	env.logger = log
	sandboxed, err := enterSandbox(hello.Hello.Sandbox, &env) // before any of the scanner's code
	if err != nil {
		_ = c.Send(fromChild{Ready: &childReady{Err: err.Error()}})
		return 4
	}
	e.env.Store(&env)
	w := &worker{id: os.Getpid()}
	ctx := context.Background()
	wenv, err := e.workerEnv(ctx, w, &env)
	if err != nil {
		_ = c.Send(fromChild{Ready: &childReady{Err: err.Error()}})
		return 4
	}
	if err := c.Send(fromChild{Ready: &childReady{Sandbox: sandboxed}}); err != nil {
		return 3
	}

	// One goroutine reads the parent's scans and runs each at once, with
	// no hand-over; a runtime.Goexit in a scan ends it, and the next one
	// reads on. Cancels come on the control stream, which a watcher reads
	// meanwhile.
	r := &childReader{e: e, c: c, env: *wenv, cancels: map[uint64]context.CancelCauseFunc{}}
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
	if t, ok := e.orig.(WorkerTeardown); ok {
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var err error
		if perr := pipeline.Protect(func() { err = t.TeardownWorker(tctx, *wenv) }); perr != nil {
			err = perr
		}
		if err != nil {
			log.Error("worker teardown", "err", err)
		}
	}
	_ = c.Close()
	return 0
}

var errCancelledByParent = errors.New("psengine: the engine cancelled the scan")

// childReader reads a worker child's messages and runs its scans.
type childReader struct {
	e       *Engine
	c       *child.Conn
	env     Env
	mu      sync.Mutex
	cancels map[uint64]context.CancelCauseFunc
}

// loop runs the scans the parent sends, one after the other, until the
// parent ends the stream (true), or a scan calls runtime.Goexit (then
// loop does not return).
func (r *childReader) loop() bool {
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
func (r *childReader) watch() {
	for {
		var m toChild
		if err := r.c.RecvControl(&m); err != nil {
			return
		}
		r.mu.Lock()
		if cancel := r.cancels[m.Cancel]; cancel != nil {
			cancel(errCancelledByParent)
		}
		r.mu.Unlock()
	}
}

// scan runs one scan and sends its result, also when the scan calls
// runtime.Goexit (from a deferred call: the goroutine then ends).
func (r *childReader) scan(req scanRequest) {
	ctx, cancel := context.WithCancelCause(context.Background())
	r.mu.Lock()
	r.cancels[req.ID] = cancel
	r.mu.Unlock()
	res := scanResult{ID: req.ID, Err: toWireError(pipeline.ErrGoexit)}
	defer func() {
		r.mu.Lock()
		delete(r.cancels, req.ID)
		r.mu.Unlock()
		cancel(nil)
		_ = r.c.Send(fromChild{Result: &res})
	}()
	res = r.e.childScan(ctx, r.env, req)
}

// childScan runs one scan in a child, bounded by the request's deadline.
func (e *Engine) childScan(ctx context.Context, env Env, req scanRequest) scanResult {
	res := scanResult{ID: req.ID}
	a, err := req.Artifact.artifact()
	if err != nil {
		res.Err = toWireError(err)
		return res
	}
	defer a.Close()
	if !req.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadlineCause(ctx, req.Deadline, ErrTimeout)
		defer cancel()
	}
	// A panic becomes an error; a scan that ignores its ctx is the
	// parent's to end, by killing this process.
	var out Analysis
	if perr := pipeline.Protect(func() { out, err = e.scanner.Scan(ctx, env, a) }); perr != nil {
		err = perr
	}
	if err == nil {
		res.Analysis, err = json.Marshal(out)
	}
	res.Err = toWireError(err)
	return res
}

// artifact rebuilds the Artifact a parent sent.
func (w wireArtifact) artifact() (Artifact, error) {
	var c *fetch.Content
	if w.Path != "" {
		var err error
		if c, err = fetch.FromFile(w.Path, w.Size, w.SHA256); err != nil {
			return Artifact{}, err
		}
	} else {
		c = fetch.FromBytes(w.Data)
	}
	return Artifact{Type: w.Type, URI: w.URI, SHA256: w.SHA256, Size: w.Size, MIMEType: w.MIMEType, content: c}, nil
}

// lowestLevel is the lowest level l logs.
func lowestLevel(l *slog.Logger) slog.Level {
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn} {
		if l.Enabled(context.Background(), level) {
			return level
		}
	}
	return slog.LevelError
}
