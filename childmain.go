package psengine

import (
	"context"
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
	e.env.Store(&env)
	w := &worker{id: os.Getpid()}
	ctx := context.Background()
	wenv, err := e.workerEnv(ctx, w)
	if err != nil {
		_ = c.Send(fromChild{Ready: &childReady{Err: err.Error()}})
		return 4
	}
	if err := c.Send(fromChild{Ready: &childReady{}}); err != nil {
		return 3
	}

	// This goroutine reads the parent's messages; each scan runs on a
	// goroutine of its own, which sends its result (the parent sends the
	// next scan only then). A Cancel cancels the running scan's ctx.
	var running sync.WaitGroup
	var mu sync.Mutex
	cancels := map[uint64]context.CancelCauseFunc{}
	for {
		var m toChild
		if err := c.Recv(&m); err != nil {
			break // the parent retires us (or is gone)
		}
		switch {
		case m.Scan != nil:
			req := *m.Scan
			sctx, cancel := context.WithCancelCause(ctx)
			mu.Lock()
			cancels[req.ID] = cancel
			mu.Unlock()
			running.Go(func() {
				// What is sent if the scan calls runtime.Goexit: the
				// deferred code runs, then the goroutine ends.
				res := scanResult{ID: req.ID, Err: toWireError(pipeline.ErrGoexit)}
				defer func() {
					mu.Lock()
					delete(cancels, req.ID)
					mu.Unlock()
					cancel(nil)
					_ = c.Send(fromChild{Result: &res})
				}()
				res = e.childScan(sctx, *wenv, req)
			})
		case m.Cancel != 0:
			mu.Lock()
			if cancel := cancels[m.Cancel]; cancel != nil {
				cancel(errCancelledByParent)
			}
			mu.Unlock()
		}
	}
	running.Wait()
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
		res.Analysis, err = toWireAnalysis(out)
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
