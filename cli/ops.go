package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/polyswarm/psengine"
)

// readyTimeout bounds one /readyz check (a scanner's CheckHealth that hangs
// answers 503, not never).
const readyTimeout = 5 * time.Second

// ops is the operation side of a long-running command (webhook, worker):
// its telemetry, the server of /metrics, /healthz and /readyz, and the
// periodic definition update.
type ops struct {
	log   *slog.Logger // the command's logger, with trace ids
	tel   *telemetry
	every time.Duration

	srv    *http.Server // nil without --metrics-addr
	served chan error
	ready  atomic.Pointer[func(context.Context) error] // nil: starting

	loop     sync.Mutex
	stopLoop context.CancelFunc // ends the update loop and an update under way
	loopDone chan struct{}
}

// startOps sets up the telemetry the flags ask for and, with
// --metrics-addr, starts serving /metrics, /healthz and /readyz at once
// (before the engine starts, which may take a while: /readyz answers 503
// until it is ready) and prints "metrics on http://ADDR" to Stdout. The
// caller closes what it returns. log is the command's logger; ops.log is
// the same with trace ids, for the rest of the command.
func (p *Program) startOps(ctx context.Context, log *slog.Logger, f *opsFlags) (*ops, error) {
	tel, err := p.newTelemetry(ctx, log, f)
	if err != nil {
		return nil, err
	}
	o := &ops{log: withTraceIDs(log), tel: tel, every: f.updateEvery}
	if f.metricsAddr == "" {
		return o, nil
	}
	ln, err := net.Listen("tcp", loopbackDefault(f.metricsAddr))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("--metrics-addr: %w", err), tel.shutdown(ctx))
	}
	o.srv = &http.Server{
		Handler:           o.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	o.served = make(chan error, 1)
	go func() { o.served <- o.srv.Serve(ln) }()
	fmt.Fprintf(p.Stdout, "metrics on http://%s\n", ln.Addr())
	log.InfoContext(ctx, "metrics, health and readiness served", "addr", ln.Addr().String(),
		"paths", "/metrics /healthz /readyz")
	return o, nil
}

// handler routes /metrics, /healthz and /readyz; anything else is 404, and
// methods other than GET and HEAD 405.
func (o *ops) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.tel.registry, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(o.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError, // a failing collector costs its series, not the scrape
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", o.readyz)
	return mux
}

// readyz answers 200 when the engine is ready (Engine.Ready), else 503
// with the reason.
func (o *ops) readyz(w http.ResponseWriter, r *http.Request) {
	ready := o.ready.Load()
	if ready == nil {
		plain(w, http.StatusServiceUnavailable, "not ready: starting")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := (*ready)(ctx); err != nil {
		plain(w, http.StatusServiceUnavailable, oneLine(err))
		return
	}
	plain(w, http.StatusOK, "ok")
}

func plain(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
}

// engineOptions are the options that hand the telemetry to the engine.
func (o *ops) engineOptions() []psengine.Option { return o.tel.engineOptions() }

// follow makes e the engine /readyz asks and, with --update-interval,
// starts updating its definitions periodically until the returned stop is
// called (stop waits for an update under way, which it cancels). ctx's end
// (a signal) stops the ticks. Call stop before shutting e down.
func (o *ops) follow(ctx context.Context, e *psengine.Engine) (stop func()) {
	ready := e.Ready
	o.ready.Store(&ready)
	if o.every <= 0 {
		return func() {}
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	o.loop.Lock()
	o.stopLoop, o.loopDone = cancel, done
	o.loop.Unlock()
	go func() {
		defer close(done)
		o.updateLoop(ctx, loopCtx, e)
	}()
	o.log.InfoContext(ctx, "definitions are updated periodically", "interval", o.every)
	return o.stopUpdates
}

// intake is follow for webhook's submitter: the local engine, or a
// backend's queue (intake only: ready once connected, and nothing to
// update here). The returned stop stops the updates, then calls stop.
func (o *ops) intake(ctx context.Context, sub any, stop func(context.Context) error) func(context.Context) error {
	e, ok := sub.(*psengine.Engine)
	if !ok {
		ready := func(context.Context) error { return nil }
		o.ready.Store(&ready)
		return stop
	}
	stopUpdates := o.follow(ctx, e)
	return func(ctx context.Context) error {
		stopUpdates()
		return stop(ctx)
	}
}

// updateLoop calls e.Update every o.every until loopCtx is cancelled or
// sigCtx ends. The engine logs and counts each result; a failed update
// leaves the last good definitions serving.
func (o *ops) updateLoop(sigCtx, loopCtx context.Context, e *psengine.Engine) {
	t := time.NewTicker(o.every)
	defer t.Stop()
	for {
		select {
		case <-sigCtx.Done():
			return
		case <-loopCtx.Done():
			return
		case <-t.C:
		}
		// An update may take as long as the interval, and a few minutes
		// in any case (a daemon reloading a large database).
		ctx, cancel := context.WithTimeout(loopCtx, max(o.every, 5*time.Minute))
		start := time.Now()
		err := e.Update(ctx)
		cancel()
		o.log.DebugContext(ctx, "definitions update", "took", time.Since(start).Round(time.Millisecond), "ok", err == nil)
	}
}

// stopUpdates ends the update loop and waits for it; it may be called
// more than once.
func (o *ops) stopUpdates() {
	o.loop.Lock()
	cancel, done := o.stopLoop, o.loopDone
	o.loop.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// close stops the updates, the server and the telemetry (flushing the
// spans still batched).
func (o *ops) close() {
	o.stopUpdates()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if o.srv != nil {
		if err := o.srv.Shutdown(ctx); err != nil {
			o.log.WarnContext(ctx, "stopping the metrics server", "err", err)
		}
		if err := <-o.served; !errors.Is(err, http.ErrServerClosed) {
			o.log.ErrorContext(ctx, "the metrics server failed", "err", err)
		}
	}
	if err := o.tel.shutdown(ctx); err != nil {
		o.log.WarnContext(ctx, "stopping telemetry", "err", err)
	}
}
