package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
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
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	run := p.addRunFlags(fs, "")
	workers := fs.Int("workers", p.defaultWorkers(runtime.NumCPU()), "bounties scanned at once")
	grace := fs.Duration("grace", 30*time.Second, "on SIGINT or SIGTERM, how long running scans may finish")
	conns := p.backendFlags(fs)
	opsF := addOpsFlags(fs)
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
	connect, err := p.connector(backend, conns)
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
			log.Error("closing the backend", "err", err)
		}
	}()
	opts := append([]psengine.Option{psengine.WithWorkers(*workers), psengine.WithBroker(sess.Broker())}, sess.WorkerOptions()...)
	opts = append(opts, run.engineOptions()...)
	engine := p.engine(log, append(opts, o.engineOptions()...)...)
	defer shutdown(engine, log)
	if err := engine.Start(ctx); err != nil {
		return err
	}
	defer o.follow(ctx, engine)() // stops the updates before the shutdown

	// The signal does not cancel running scans: it stops intake (a broker
	// that can Close finishes its current jobs and returns), and only after
	// the grace period are the scans cancelled.
	serveCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	served := make(chan struct{})
	stopOnSignal := context.AfterFunc(ctx, func() {
		log.Info("stopping: running scans may finish", "grace", *grace)
		c, ok := sess.Broker().(interface{ Close() })
		if !ok {
			cancel()
			return
		}
		c.Close()
		t := time.NewTimer(*grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-served:
		}
	})
	log.Info("worker serving", "backend", run.backend.String(), "workers", *workers)
	err = engine.Serve(serveCtx)
	close(served)
	stopOnSignal()
	return err
}
