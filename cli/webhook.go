package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/deliver"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/fetch"
	"github.com/polyswarm/psengine/localq"
	"github.com/polyswarm/psengine/webhook"
)

// DefaultWebhookPort is where `ENGINE webhook` listens without -p.
const DefaultWebhookPort = 5000

// webhook serves PolySwarm's webhook until ctx ends (SIGINT, SIGTERM), then
// stops intake and drains. It prints "listening on http://ADDR" to Stdout
// once the port is open, so a supervisor or a test started with -p 0 learns
// the port.
//
// With --backend local (the default) or process, this process scans the
// bounties itself and POSTs the answers, and every bounty answered 202 is
// first recorded in a store in the engine's state directory (package
// localq): bounties a stopped or killed run left are answered by the next
// one. With a registered backend it is intake only: the bounties go to the
// backend's queue and workers anywhere answer them.
func (p *Program) webhook(ctx context.Context, args []string) error {
	fs := newFlagSet("webhook")
	port := fs.Int("p", DefaultWebhookPort, "TCP port to listen on; 0 picks a free one")
	fs.IntVar(port, "port", DefaultWebhookPort, "same as -p")
	addr := fs.String("addr", "127.0.0.1", "host or IP to listen on (0.0.0.0 or :: for every interface)")
	run := p.addRunFlags(fs, "local")
	secretFlag := fs.String("secret", "", "webhook secret: every user sees it in ps (default $PSENGINE_WEBHOOK_SECRET, then $WEBHOOK_SECRET)")
	secretFile := fs.String("secret-file", "", "read the webhook secret from this file (yours, mode 0600 or 0400; a trailing newline is dropped)")
	perSource := fs.Int("reads-per-source", webhook.DefaultReadsPerSource, "request bodies one address may send at once before authentication (behind a reverse proxy, all requests share its address)")
	insecure := fs.Bool("insecure", false, "without a secret, accept unsigned requests (development only)")
	allowFile := fs.Bool("allow-file", false, "let bounties reference file:// artifacts (development only)")
	allowPrivate := fs.Bool("allow-private", false, "let bounties reference artifacts, and response URLs for their answers, on loopback, private and link-local addresses (development only)")
	workers := fs.Int("workers", p.defaultWorkers(4), "bounties scanned at once (--backend local)")
	pipe := addPipelineFlags(fs)
	maxBody := fs.Int64("max-body", webhook.DefaultMaxBody, "largest request body accepted, in bytes")
	drain := fs.Duration("drain", 30*time.Second, "how long shutdown waits for queued and running bounties (those left are answered at the next start)")
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
	switch {
	case len(rest) > 0:
		return usageError{fmt.Sprintf("webhook takes no arguments, got %q", rest)}
	case *port < 0 || *port > 65535:
		return usageError{fmt.Sprintf("-p %d: want a port in 0-65535", *port)}
	case *workers < 1:
		return usageError{"--workers must be at least 1"}
	case pipe.check() != nil:
		return pipe.check()
	case *maxBody < 1:
		return usageError{"--max-body must be at least 1"}
	case *perSource < 1:
		return usageError{"--reads-per-source must be at least 1"}
	case *addr == "":
		return usageError{"--addr: give a host or IP (0.0.0.0 or :: for every interface)"}
	case *drain <= 0:
		return usageError{"--drain must be positive"}
	}
	if err := run.check(p); err != nil {
		return err
	}
	queue := run.backend.queue
	switch {
	case *allowFile && queue != "local":
		return usageError{"--allow-file applies to --backend local or process only: workers use their own fetch policy"}
	case *allowPrivate && queue != "local":
		return usageError{"--allow-private applies to --backend local or process only: workers use their own fetch policy"}
	case run.backend.process && queue != "local":
		return usageError{"webhook --backend " + queue + ",process: with a queue, the workers choose how scans run (worker --backend " + queue + ",process)"}
	case opsF.updateEvery > 0 && queue != "local":
		return usageError{"--update-interval applies to --backend local or process only: the workers update their own definitions"}
	case *selftestDir != "" && queue != "local":
		return usageError{"--selftest-dir applies to --backend local or process only: the workers update their own definitions"}
	}
	gate, err := selfTest(*selftestDir) // cache.go
	if err != nil {
		return err
	}
	var connect Connector
	if queue != "local" {
		connect = conns[queue]
	}
	secret, err := p.webhookSecret(*secretFlag, *secretFile)
	if err != nil {
		return err
	}
	if secret == "" && !*insecure {
		return usageError{"no webhook secret: set PSENGINE_WEBHOOK_SECRET or give --secret-file (or --insecure for development)"}
	}
	log, err := p.newLogger(slog.LevelInfo)
	if err != nil {
		return err
	}
	if *secretFlag != "" {
		log.WarnContext(ctx, "the webhook secret was given with --secret: every user of this machine can read it in the process list (ps); use --secret-file or PSENGINE_WEBHOOK_SECRET")
	}
	if secret == "" && everyInterface(*addr) {
		log.WarnContext(ctx, "unauthenticated requests (--insecure) are taken on every interface (--addr "+*addr+")")
	}
	if queue == "local" {
		if err := p.checkDirs(); err != nil {
			return err
		}
	}
	o, err := p.startOps(ctx, log, opsF)
	if err != nil {
		return err
	}
	defer o.close()
	log = o.log

	runOpts := append(append(append(run.engineOptions(), pipe.engineOptions()...), o.engineOptions()...), gate...)
	if queue == "local" {
		cacheOpts, closeCache := p.resultCache(log, *noCache) // cache.go
		defer closeCache()                                    // after stop, which shuts the engine down
		runOpts = append(runOpts, cacheOpts...)
	}
	sub, stop, err := p.intake(ctx, log, connect, *workers, *allowFile, *allowPrivate, runOpts)
	if err != nil {
		return err
	}
	stop = o.intake(ctx, sub, stop)
	if e, ok := sub.(*psengine.Engine); ok && len(gate) > 0 {
		checkServing(ctx, log, e) // cache.go
	}
	opts := []webhook.Option{webhook.WithSecret(secret), webhook.WithMaxBody(*maxBody), webhook.WithLogger(log),
		webhook.WithReadLimitPerSource(*perSource)}
	if *insecure {
		opts = append(opts, webhook.WithInsecure())
	}
	handler, err := webhook.NewHandler(sub, opts...)
	if err == nil {
		err = p.serveWebhook(ctx, log, handler, *addr, *port, *drain, stop)
	} else {
		err = errors.Join(err, stop(context.WithoutCancel(ctx)))
	}
	if err == nil {
		log.InfoContext(ctx, "stopped")
	}
	return err
}

// intake returns what the handler submits to and how to stop it once the
// server is closed: the local engine serving the durable store of the
// engine's state directory, or a backend session.
func (p *Program) intake(ctx context.Context, log *slog.Logger, connect Connector, workers int, allowFile, allowPrivate bool, runOpts []psengine.Option) (webhook.Submitter, func(context.Context) error, error) {
	if connect != nil {
		sess, err := connect(ctx, log)
		if err != nil {
			return nil, nil, fmt.Errorf("webhook: %w", err)
		}
		// The backend's queue is durable: nothing to drain here. Jobs are
		// made here, as the engine's SubmitJob makes them.
		q := sess.Broker()
		submit := func(ctx context.Context, job broker.Job) error {
			now := time.Now()
			job, err := broker.NewJob(job.ID, job.Bounty, now, psengine.DefaultLocalTTL)
			if err != nil {
				return err
			}
			if job.Bounty.Expired(now) {
				return fmt.Errorf("%w: at %s", psengine.ErrExpired, now.UTC().Format(time.RFC3339))
			}
			return q.Submit(ctx, job)
		}
		return webhook.SubmitFunc(submit), func(context.Context) error { q.Close(); return sess.Close() }, nil
	}
	// Bounties arrive from the network: by default they may reference
	// http(s) and data: artifacts only, and artifacts and response URLs on
	// public addresses only (a bounty must not make the engine reach into
	// its own network, to fetch or to POST its answer). These options come
	// after the program's own, so they replace its fetch policy and, unless
	// --allow-private, its Deliverer.
	policy := fetch.Remote()
	policy.PublicOnly = !allowPrivate
	opts := append([]psengine.Option{psengine.WithWorkers(workers)}, runOpts...)
	if allowPrivate {
		log.WarnContext(ctx, "bounties may reference artifacts and response URLs on private addresses (--allow-private)")
	} else {
		opts = append(opts, psengine.WithDeliverer(psengine.HTTPDeliverer(&deliver.Client{PublicOnly: true, Logger: log})))
	}
	if allowFile {
		policy.Allow = append(policy.Allow, "file")
		log.WarnContext(ctx, "bounties may reference local files (--allow-file)")
	}
	q, err := p.openIntakeStore(ctx, log)
	if err != nil {
		return nil, nil, err
	}
	engine := p.engine(log, append(opts, psengine.WithFetchPolicy(policy), psengine.WithBroker(q))...)
	if err := engine.Start(ctx); err != nil {
		shutdown(engine, log)
		return nil, nil, errors.Join(err, q.Release())
	}
	// The engine serves the store until it is shut down: a signal does
	// not cancel it; stop does.
	served := make(chan error, 1)
	go func() {
		testHookBeforeServe(engine)
		served <- engine.Serve(context.WithoutCancel(ctx))
	}()
	stop := func(ctx context.Context) error {
		// No new bounties; those recorded are answered until ctx's
		// deadline, then those in progress are cut short and handed back:
		// they stay recorded, with their answer if it was kept, for the
		// next start.
		var errs []error
		if err := withoutCause(engine.Shutdown(ctx), ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping the engine: %w", err))
		}
		if ctx.Err() != nil {
			log.WarnContext(ctx, "drain deadline passed: the bounties in progress stay recorded for the next start")
		}
		// ErrClosed: the signal came before Serve began (it then takes
		// no job); what is recorded stays so for the next start.
		if err := <-served; err != nil && !errors.Is(err, psengine.ErrClosed) {
			errs = append(errs, err)
		}
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if left, err := q.Recorded(tctx); err != nil {
			errs = append(errs, err)
		} else if len(left) > 0 {
			for _, job := range left {
				log.InfoContext(ctx, "bounty left recorded: it is answered at the next start", "bounty", job.Bounty.ID.String(),
					"job", job.ID, "attempt", job.Attempt, "answered", job.Answer != nil, "expiration", job.Bounty.Expiration)
			}
			log.WarnContext(ctx, "bounties left recorded for the next start", "count", len(left))
		}
		if err := q.Release(); err != nil {
			errs = append(errs, fmt.Errorf("closing the intake store: %w", err))
		}
		return errors.Join(errs...)
	}
	return engine, stop, nil
}

// testHookBeforeServe runs before the intake engine's Serve (tests).
var testHookBeforeServe = func(*psengine.Engine) {}

// withoutCause is err (from a Shutdown given ctx) without ctx's cause: a
// drain deadline that passed loses nothing (what was not finished stays
// recorded), so it is not a failure of the command.
func withoutCause(err error, ctx context.Context) error {
	cause := context.Cause(ctx)
	if err == nil || cause == nil {
		return err
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var rest []error
		for _, e := range j.Unwrap() {
			if e != cause {
				rest = append(rest, e)
			}
		}
		return errors.Join(rest...)
	}
	if err == cause {
		return nil
	}
	return err
}

// openIntakeStore opens the durable intake store in the engine's state
// directory and logs what an earlier run left in it.
func (p *Program) openIntakeStore(ctx context.Context, log *slog.Logger) (*localq.Broker, error) {
	dirs, warnings, err := envdirs.Resolve(p.Name, p.Getenv)
	if err != nil {
		return nil, fmt.Errorf("webhook: the engine's state directory: %w", err)
	}
	for _, w := range warnings {
		log.WarnContext(ctx, w)
	}
	path := filepath.Join(dirs.State, localq.DefaultFile)
	q, err := localq.Open(path, localq.Config{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("webhook: the intake store: %w", err)
	}
	if n := q.Len(); n > 0 {
		log.InfoContext(ctx, "resuming bounties recorded by an earlier run", "count", n, "store", path)
	} else {
		log.InfoContext(ctx, "intake store opened", "store", path)
	}
	return q, nil
}

// serveWebhook listens, serves h until ctx ends or the server fails, then
// closes the server and calls stop, both within the drain deadline.
func (p *Program) serveWebhook(ctx context.Context, log *slog.Logger, h http.Handler, addr string, port int,
	drain time.Duration, stop func(context.Context) error) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
	if err != nil {
		return errors.Join(err, stop(context.WithoutCancel(ctx)))
	}
	// Requests are small: headers within 5s; the handler gives each body
	// webhook.DefaultReadTimeout, and ReadTimeout is the backstop.
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       20 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(p.Stdout, "listening on http://%s\n", ln.Addr())
	log.InfoContext(ctx, "webhook listening", "addr", ln.Addr().String())

	var errs []error
	select {
	case <-ctx.Done():
		log.InfoContext(ctx, "stopping: no new bounties; draining", "deadline", drain)
	case err := <-served: // the server failed on its own
		log.ErrorContext(ctx, "webhook server stopped", "err", err)
		errs = append(errs, err)
		served = nil
	}
	// Stop intake first (requests under way finish), then let what was
	// accepted be answered, all within the drain deadline.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	if served != nil {
		if err := srv.Shutdown(sctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping the server: %w", err))
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, stop(sctx))
	return errors.Join(errs...)
}
