package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/polyswarm/psengine"
)

// worker serves a backend's queue: it answers the bounties that analyze,
// webhook or any other submitter queued, on this machine, until SIGINT or
// SIGTERM. Then it stops taking work and gives running scans --grace to
// finish (their bounties are acknowledged, or left for another worker).
func (p *Program) worker(ctx context.Context, args []string) error {
	fs := newFlagSet("worker")
	run := p.addRunFlags(fs, "")
	workers := fs.Int("workers", p.defaultWorkers(runtime.NumCPU()), "bounties scanned at once")
	grace := fs.Duration("grace", 30*time.Second, "on SIGINT or SIGTERM, how long running scans may finish")
	pipe := addPipelineFlags(fs)
	conns := p.backendFlags(fs)
	opsF := addOpsFlags(fs)
	noCache, selftestDir := addCacheFlag(fs), addSelfTestFlag(fs) // cache.go
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if err := opsF.check(); err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError{fmt.Sprintf("worker takes no arguments, got %q", rest)}
	}
	if err := run.check(p); err != nil {
		return err
	}
	backend := run.backend.queue
	if backend == "" || backend == "local" {
		return usageError{"worker needs --backend naming a queue (NAME or NAME,process): " + p.backendNames()}
	}
	if *workers < 1 {
		return usageError{"--workers must be at least 1"}
	}
	if err := pipe.check(); err != nil {
		return err
	}
	connect := conns[backend]
	gate, err := selfTest(*selftestDir) // cache.go
	if err != nil {
		return err
	}
	log, err := p.newLogger(slog.LevelInfo)
	if err != nil {
		return err
	}
	if err := p.checkDirs(); err != nil {
		return err
	}
	o, err := p.startOps(ctx, log, opsF)
	if err != nil {
		return err
	}
	defer o.close()
	log = o.log
	sess, err := connect(ctx, log)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	defer func() {
		if err := sess.Close(); err != nil {
			log.ErrorContext(ctx, "closing the backend", "err", err)
		}
	}()
	opts := append([]psengine.Option{psengine.WithWorkers(*workers), psengine.WithBroker(sess.Broker())}, sess.WorkerOptions()...)
	opts = append(append(opts, run.engineOptions()...), pipe.engineOptions()...)
	cacheOpts, closeCache := p.resultCache(log, *noCache) // cache.go
	defer closeCache()                                    // after the engine's shutdown
	opts = append(append(opts, cacheOpts...), gate...)
	engine := p.engine(log, append(opts, o.engineOptions()...)...)
	defer shutdown(engine, log)
	if err := engine.Start(ctx); err != nil {
		return err
	}
	if len(gate) > 0 {
		checkServing(ctx, log, engine) // cache.go
	}
	defer o.follow(ctx, engine)() // stops the updates before the shutdown

	// The signal does not cancel running scans: it shuts the engine down,
	// which closes the broker (no new jobs), and only after the grace period
	// are the bounties in progress cut short (handed back to the queue for
	// another worker).
	served := make(chan error, 1)
	go func() {
		testHookBeforeServe(engine)
		served <- engine.Serve(context.WithoutCancel(ctx))
	}()
	log.InfoContext(ctx, "worker serving", "backend", run.backend.String(), "workers", *workers)
	select {
	case err = <-served:
	case <-ctx.Done():
		log.InfoContext(ctx, "stopping: running scans may finish", "grace", *grace)
		gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *grace)
		defer cancel()
		if serr := engine.Shutdown(gctx); serr != nil {
			log.WarnContext(ctx, "shutdown", "err", serr)
		}
		// ErrClosed: the signal came before Serve began; it took no job.
		if err = <-served; errors.Is(err, psengine.ErrClosed) {
			err = nil
		}
	}
	return err
}
