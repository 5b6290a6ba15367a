package psengine

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/polyswarm/psengine/deliver"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/fetch"
	"github.com/polyswarm/psengine/pipeline"
)

// Defaults of the options.
const (
	DefaultDeliveryMargin = 5 * time.Second
	DefaultLocalTTL       = 5 * time.Minute
	// LateScanWindow is how long a scan may take when its bounty's
	// expiration (less the delivery margin) has already passed, which
	// happens only with WithDiscardExpired(false) (WithTimeout still caps it).
	LateScanWindow = 30 * time.Second
)

// Engine answers bounties with a Scanner. Make one with New; it is safe for
// concurrent use. Its setup (Start) runs once, on the first call that needs
// it; Shutdown drains it and runs the teardowns.
type Engine struct {
	orig    Scanner // as given: the optional interfaces are looked up on it
	scanner Scanner // wrapped in the middleware
	cfg     config

	// front runs fetch -> identify -> accept -> scan; back runs bid ->
	// enrich -> validate. Composed once in New.
	front, back pipeline.Stage[*task, *task]

	startOnce sync.Once
	startErr  error
	env       atomic.Pointer[Env]

	slots   chan *worker
	workers []*worker

	broker    Broker
	ownBroker *MemoryBroker

	// bg is the context of the engine's own goroutines (consumers); it ends
	// when Shutdown has drained. hard ends when Shutdown's deadline passes.
	bg, hard             context.Context
	stopBG, stopHard     context.CancelFunc
	consumers            sync.WaitGroup
	inflight             counter // calls under way (see withWorker)
	closed               atomic.Bool
	gate                 sync.RWMutex // orders closing against new in-flight calls
	shutdownOnce         sync.Once
	shutdownErr          error
	consumersStartedOnce sync.Once
	stuck                atomic.Int32 // scans settled without them that have not returned yet
}

// worker is one scanning slot with its own Env. A worker is used by one
// goroutine at a time (it is taken from Engine.slots and put back).
type worker struct {
	id     int
	env    Env  // the worker's own Env, valid when ready
	base   *Env // the engine Env it was built on
	ready  bool
	runner *scanRunner // WithScanIsolation: started on the first scan
	task   task        // the bounty being processed (see bountyRun.task)

	// token: the call holding w counts in Engine.inflight; the watchdog
	// releases it for a scan that overran, so that Shutdown need not wait
	// for that scan (see bountyRun.overrun).
	token   atomic.Bool
	held    atomic.Bool // a call holds w
	mu      sync.Mutex
	run     *bountyRun  // the bounty being processed, for the timer and Shutdown
	timer   *time.Timer // the watchdog of w's runs (see worker.tick)
	armedAt time.Time   // when timer fires (zero: not armed)
}

// releaseToken ends the in-flight count of the call holding w, once.
func (w *worker) releaseToken(e *Engine) {
	if w.token.CompareAndSwap(true, false) {
		e.inflight.done()
	}
}

// New returns an engine answering with scanner. It does not fail: an
// invalid option panics at once (a programming error), and setup errors
// surface from Start or the first call that needs the engine.
func New(scanner Scanner, opts ...Option) *Engine {
	if scanner == nil {
		panic("psengine: New with a nil Scanner")
	}
	cfg := config{
		workers:        1,
		margin:         DefaultDeliveryMargin,
		localTTL:       DefaultLocalTTL,
		bidder:         LinearBid,
		policy:         fetch.Remote(),
		discardExpired: true,
		getenv:         os.Getenv,
	}
	for _, o := range opts {
		if o == nil {
			panic("psengine: New with a nil Option")
		}
		o.apply(&cfg)
	}
	if v := cfg.getenv("PSENGINE_DISCARD_EXPIRED_BOUNTIES"); v != "" && !cfg.discardSet {
		if b, err := strconv.ParseBool(v); err == nil {
			cfg.discardExpired = b
		}
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.name == "" {
		cfg.name = "engine"
	}
	cfg.localPolicy = localPolicy(cfg.policy)
	if cfg.deliverer == nil {
		cfg.deliverer = HTTPDeliverer(&deliver.Client{Logger: cfg.logger})
	}

	e := &Engine{orig: scanner, scanner: scanner, cfg: cfg}
	for i := len(cfg.middleware) - 1; i >= 0; i-- {
		e.scanner = cfg.middleware[i](e.scanner)
	}
	e.front, e.back = e.frontStages(), e.backStages()
	e.slots = make(chan *worker, cfg.workers)
	for i := range cfg.workers {
		w := &worker{id: i + 1}
		e.workers = append(e.workers, w)
		e.slots <- w
	}
	e.broker = cfg.broker
	if e.broker == nil {
		e.ownBroker = NewMemoryBroker(MemoryBrokerConfig{})
		e.broker = e.ownBroker
	}
	e.bg, e.stopBG = context.WithCancel(context.Background())
	e.hard, e.stopHard = context.WithCancel(context.Background())
	return e
}

// localPolicy is the policy for the host's own inputs: every local scheme,
// with p's limits, temp settings, client and custom schemes.
func localPolicy(p fetch.Policy) fetch.Policy {
	l := fetch.Local()
	l.MaxSize, l.MemoryLimit = p.MaxSize, p.MemoryLimit
	l.TempDir, l.TempPrefix = p.TempDir, p.TempPrefix
	l.Stdin = p.Stdin
	if p.Client != nil {
		l.Client = p.Client
	}
	for scheme := range p.Openers {
		l.Allow = append(l.Allow, scheme)
	}
	l.Openers = p.Openers
	return l
}

// Start runs the engine's setup once: base directories, EngineSetup, the
// head (Describer), and the workers of the in-process broker. Later calls
// return the first call's result. ctx bounds the setup only. Analyze,
// AnalyzeBounty, Submit, Serve and Command call Start themselves.
func (e *Engine) Start(ctx context.Context) error {
	e.startOnce.Do(func() { e.startErr = e.start(ctx) })
	return e.startErr
}

func (e *Engine) start(ctx context.Context) error {
	log := e.cfg.logger
	var dirs envdirs.Dirs
	if e.cfg.dirs != nil {
		dirs = *e.cfg.dirs
	} else {
		d, warnings, err := envdirs.Resolve(e.cfg.name, e.cfg.getenv)
		if err != nil {
			return kind(ErrSetup, err)
		}
		for _, w := range warnings {
			log.Warn(w)
		}
		dirs = d
	}
	env := Env{dirs: dirs, logger: log, name: e.cfg.name}

	if s, ok := e.orig.(EngineSetup); ok {
		var out Env
		var err error
		if perr := pipeline.Protect(func() { out, err = s.SetupEngine(ctx, env) }); perr != nil {
			err = perr
		}
		if err != nil {
			return kind(ErrSetup, fmt.Errorf("engine setup: %w", err))
		}
		env = out
	}

	head := e.cfg.meta
	if d, ok := e.orig.(Describer); ok {
		var m Metadata
		var err error
		if perr := pipeline.Protect(func() { m, err = d.Describe(ctx, env) }); perr != nil {
			err = perr
		}
		if err != nil {
			return kind(ErrSetup, fmt.Errorf("describe: %w", err))
		}
		head = head.merge(m)
	}
	head = head.merge(Metadata{
		Product: ProductName(e.cfg.name),
		Scanner: ScannerInfo{Environment: e.defaultEnvironment()},
	})
	env.head = head
	e.env.Store(&env)

	log.Info("engine started", "engine", e.cfg.name, "workers", e.cfg.workers,
		"product", head.Product, "vendor_version", head.Scanner.VendorVersion)
	if e.ownBroker != nil {
		e.startConsumers(e.bg, e.broker)
	}
	return nil
}

// defaultEnvironment is this machine's, unless the settings say otherwise.
func (e *Engine) defaultEnvironment() Environment {
	env := Environment{OperatingSystem: runtime.GOOS, Architecture: archName(runtime.GOARCH)}
	if v := e.cfg.getenv("PSENGINE_METADATA_OS"); v != "" {
		env.OperatingSystem = strings.ToLower(v)
	}
	if v := e.cfg.getenv("PSENGINE_METADATA_ARCHITECTURE"); v != "" {
		env.Architecture = v
	}
	return env
}

// archName gives the machine name PolySwarm engines usually report.
func archName(goarch string) string {
	switch goarch {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	case "386":
		return "i686"
	}
	return goarch
}

func (e *Engine) startConsumers(ctx context.Context, b Broker) {
	for range e.cfg.workers {
		e.consumers.Add(1)
		go func() {
			defer e.consumers.Done()
			if err := b.Consume(ctx, e.handle); err != nil && ctx.Err() == nil {
				e.cfg.logger.Error("consumer stopped", "err", err)
			}
		}()
	}
}

// Env returns the engine's Env after setup (a zero Env before Start).
func (e *Engine) Env() Env {
	if p := e.env.Load(); p != nil {
		return *p
	}
	return Env{}
}

// Result is the outcome of one bounty.
type Result struct {
	Bounty Bounty
	// Analysis is the answer given (or that would have been delivered):
	// the scanner's, or a special result when something failed. Meaningful
	// when Answered.
	Analysis Analysis
	// Answered is false when no answer was produced: the bounty was
	// malformed or expired, the input could not be turned into a bounty,
	// or the engine was shut down first.
	Answered bool
	// Delivered is true when the answer was accepted by the response URL.
	Delivered bool
	// Err says what went wrong (nil on success); it wraps one of the error
	// kinds (ErrFetch, ErrScan, ErrTimeout...) and the cause.
	Err error
}

// Answer returns the wire form of the result's answer.
func (r Result) Answer() Answer { return NewAnswer(r.Bounty, r.Analysis) }

// Analyze answers a local file artifact given as a path, "-" (stdin) or a
// URI (file://, data:, http(s)://): it fetches it, forges its bounty (see
// LocalBounty) and runs the whole pipeline. It blocks until the answer is
// ready. The error is res.Err: with res.Answered true it says why the answer
// is a special result; otherwise there is no answer. The bounty's deadline
// (its expiration less the delivery margin, and WithTimeout) ends a scan
// with an unknown answer; ctx ending first abandons the bounty unanswered,
// with ctx's cause in the error. Either cancels the scan's ctx; the call
// returns when the scan does (at once with WithScanIsolation), with the
// answer the engine settled the bounty with if the scan took more than
// ScanGrace to return.
func (e *Engine) Analyze(ctx context.Context, uri string) (Result, error) {
	return e.AnalyzeArtifact(ctx, FileArtifact, uri)
}

// AnalyzeURL answers a URL artifact: the URL itself is what is scanned.
func (e *Engine) AnalyzeURL(ctx context.Context, u string) (Result, error) {
	return e.AnalyzeArtifact(ctx, URLArtifact, u)
}

// AnalyzeArtifact is Analyze for an artifact of type t.
func (e *Engine) AnalyzeArtifact(ctx context.Context, t ArtifactType, uri string) (Result, error) {
	res := e.withWorker(ctx, false, func(ctx context.Context, w *worker) Result { return e.analyzeLocal(ctx, w, t, uri) })
	return res, res.Err
}

// AnalyzeBounty answers b: fetch (under the fetch policy), identify, accept,
// scan, bid, enrich, validate, deliver (when b has a response URL), hooks.
// It blocks until the answer is delivered or given up, and honours ctx.
// The error is res.Err (see Analyze).
func (e *Engine) AnalyzeBounty(ctx context.Context, b Bounty) (Result, error) {
	res := e.withWorker(ctx, false, func(ctx context.Context, w *worker) Result { return e.process(ctx, w, b) })
	return res, res.Err
}

// AnalyzeAll answers local artifacts (see Analyze) with up to WithWorkers at
// once and returns the results in input order.
func (e *Engine) AnalyzeAll(ctx context.Context, uris []string) []Result {
	return slices.Collect(e.AnalyzeEach(ctx, FileArtifact, slices.Values(uris)))
}

// AnalyzeEach answers local artifacts of type t (see AnalyzeArtifact) with
// up to WithWorkers at once, yielding each result in input order as soon as
// it and those before it are ready. Stopping early cancels the rest.
func (e *Engine) AnalyzeEach(ctx context.Context, t ArtifactType, uris iter.Seq[string]) iter.Seq[Result] {
	return each(ctx, e, uris, func(ctx context.Context, uri string) (Result, error) {
		res, _ := e.AnalyzeArtifact(ctx, t, uri)
		return res, nil
	})
}

// AnalyzeBounties answers bounties (see AnalyzeBounty) with up to
// WithWorkers at once, yielding results in input order.
func (e *Engine) AnalyzeBounties(ctx context.Context, bounties iter.Seq[Bounty]) iter.Seq[Result] {
	return each(ctx, e, bounties, func(ctx context.Context, b Bounty) (Result, error) {
		res, _ := e.AnalyzeBounty(ctx, b)
		return res, nil
	})
}

func each[In any](ctx context.Context, e *Engine, ins iter.Seq[In], s pipeline.Stage[In, Result]) iter.Seq[Result] {
	return func(yield func(Result) bool) {
		for res, err := range pipeline.Stream(ctx, e.cfg.workers, ins, s) {
			if err != nil { // only a panic outside the pipeline's own recovery
				res = Result{Err: err}
			}
			if !yield(res) {
				return
			}
		}
	}
}

// withWorker starts the engine, takes a worker slot, runs fn and gives the
// slot back. (Shutdown giving up cancels the bounty fn runs: see newRun.)
// Callers from outside (internal false) are refused once Shutdown began;
// the broker's consumers still drain the queue.
func (e *Engine) withWorker(ctx context.Context, internal bool, fn func(ctx context.Context, w *worker) Result) Result {
	e.gate.RLock()
	if e.closed.Load() && !internal {
		e.gate.RUnlock()
		return Result{Err: ErrClosed}
	}
	e.inflight.add()
	e.gate.RUnlock()
	if err := e.Start(ctx); err != nil {
		e.inflight.done()
		return Result{Err: err}
	}
	var w *worker
	select {
	case w = <-e.slots: // a free worker: no need to watch ctx
	default:
		w = e.waitWorker(ctx)
	}
	if w == nil {
		e.inflight.done()
		if e.hard.Err() != nil {
			return Result{Err: ErrShutdown}
		}
		return Result{Err: context.Cause(ctx)}
	}
	w.held.Store(true)
	w.token.Store(true) // the in-flight count is w's to release now
	defer func() {
		w.held.Store(false)
		w.releaseToken(e)
		e.slots <- w
	}()
	return fn(ctx, w)
}

// waitWorker waits for a free worker; nil when ctx ends or Shutdown gives
// up first.
func (e *Engine) waitWorker(ctx context.Context) *worker {
	select {
	case w := <-e.slots:
		return w
	case <-ctx.Done():
	case <-e.hard.Done():
	}
	return nil
}

// workerEnv sets w up on first use, and re-bases it on the engine's Env
// when an update replaced that.
func (e *Engine) workerEnv(ctx context.Context, w *worker) (*Env, error) {
	cur := e.env.Load()
	if w.ready {
		if w.base != cur { // Update swapped the engine's Env
			w.env, w.base = w.env.rebase(*w.base, *cur), cur
		}
		return &w.env, nil
	}
	env := cur.WithLogger(cur.Logger().With("worker", w.id))
	if s, ok := e.orig.(WorkerSetup); ok {
		var out Env
		var err error
		if perr := pipeline.Protect(func() { out, err = s.SetupWorker(ctx, env) }); perr != nil {
			err = perr
		}
		if err != nil {
			return nil, kind(ErrSetup, fmt.Errorf("worker %d setup: %w", w.id, err))
		}
		env = out
	}
	w.env, w.base, w.ready = env, cur, true
	return &w.env, nil
}

// analyzeLocal fetches a local input, forges its bounty and processes it.
// The fetch runs under the bounty's deadline already.
func (e *Engine) analyzeLocal(ctx context.Context, w *worker, t ArtifactType, uri string) Result {
	now := time.Now()
	r := e.newRun(ctx, w, Bounty{ArtifactType: t, ArtifactURI: uri, Expiration: now.Add(e.cfg.localTTL)}, now)
	defer r.release()
	var content *fetch.Content
	var mime string
	if t == URLArtifact {
		content, mime = fetch.FromBytes([]byte(uri)), URIListType
	} else {
		var err error
		content, err = e.cfg.localPolicy.Fetch(r, uri, "")
		if err != nil {
			if !r.claim() {
				return r.wait()
			}
			return Result{Err: kind(ErrFetch, err)}
		}
		mime = DetectMIMEType(content.Head())
	}
	b := LocalBounty(t, uri, content.SHA256(), mime, now, e.cfg.localTTL)
	r.setBounty(b)
	return e.runBounty(r, content)
}

// Submit queues b on the broker and returns once the broker accepted it;
// the scan, the delivery of the answer to b's response URL and the hooks
// then run by themselves, with nobody waiting. It returns an error wrapping
// ErrMalformedBounty for an invalid bounty, ErrQueueFull when the queue
// cannot take it now (retry later), ErrClosed after Shutdown.
func (e *Engine) Submit(ctx context.Context, b Bounty) error {
	return e.SubmitJob(ctx, Job{ID: b.ID.String(), Bounty: b})
}

// SubmitJob is Submit with a chosen job ID (for deduplication).
func (e *Engine) SubmitJob(ctx context.Context, job Job) error {
	if e.closed.Load() {
		return ErrClosed
	}
	if err := job.Bounty.Validate(); err != nil {
		return err
	}
	if err := e.Start(ctx); err != nil {
		return err
	}
	if job.ID == "" {
		job.ID = job.Bounty.ID.String()
	}
	if job.Attempt < 1 {
		job.Attempt = 1
	}
	return e.broker.Submit(ctx, job)
}

// Serve runs WithWorkers consumers on the broker given by WithBroker until
// ctx ends or the broker is closed, and returns then (nil when ctx ended).
// An engine using the in-process default broker serves it by itself.
func (e *Engine) Serve(ctx context.Context) error {
	if e.ownBroker != nil {
		return errors.New("psengine: Serve needs a broker given with WithBroker; the in-process broker is served by the engine")
	}
	if err := e.Start(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(e.hard, cancel)
	defer stop()
	e.startConsumers(ctx, e.broker)
	e.consumers.Wait()
	return nil
}

// handle is the broker Handler: it answers the job's bounty. It returns an
// error (redeliver) only when the answer could not be delivered for a
// reason a later attempt may fix and the bounty has not expired.
func (e *Engine) handle(ctx context.Context, job Job) error {
	res := e.withWorker(ctx, true, func(ctx context.Context, w *worker) Result { return e.process(ctx, w, job.Bounty) })
	switch {
	case res.Err == nil:
		return nil
	case !res.Answered && ctx.Err() != nil:
		return res.Err // the consumer stopped mid-scan: hand the job back
	case errors.Is(res.Err, ErrMalformedBounty):
		return Permanent(res.Err)
	case !res.Answered:
		return nil // discarded by policy (expired), reported to the hooks
	case errors.Is(res.Err, ErrDeliver) && !errors.Is(res.Err, ErrPermanent) && !expired(job.Bounty, time.Now()) && e.hard.Err() == nil:
		return res.Err
	}
	return nil
}

func expired(b Bounty, now time.Time) bool {
	return !b.Expiration.IsZero() && !now.Before(b.Expiration)
}

// Command runs an exposed command of the scanner with the engine's Env
// (starting the engine first). Unknown names give ErrUnknownCommand; a
// panic becomes *PanicError.
func (e *Engine) Command(ctx context.Context, name string, args []string) (any, error) {
	for _, c := range e.Commands() {
		if c.Name != name {
			continue
		}
		if err := e.Start(ctx); err != nil {
			return nil, err
		}
		var out any
		var err error
		if perr := pipeline.Protect(func() { out, err = c.Run(ctx, e.Env(), args) }); perr != nil {
			err = perr
		}
		return out, err
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownCommand, name)
}

// Commands lists the commands the scanner exposes (none unless it is a
// Commander), sorted by name.
func (e *Engine) Commands() []Command {
	c, ok := e.orig.(Commander)
	if !ok {
		return nil
	}
	cmds := slices.Clone(c.Commands())
	slices.SortFunc(cmds, func(a, b Command) int { return strings.Compare(a.Name, b.Name) })
	return cmds
}

// Update asks the scanner (an Updater) for new definitions and swaps in the
// Env it returns; scans already running keep the old one, each worker
// moves to the new one with its next bounty. Without an Updater it does
// nothing.
func (e *Engine) Update(ctx context.Context) error {
	u, ok := e.orig.(Updater)
	if !ok {
		return nil
	}
	if err := e.Start(ctx); err != nil {
		return err
	}
	cur := e.Env()
	var next Env
	var err error
	if perr := pipeline.Protect(func() { next, err = u.Update(ctx, cur) }); perr != nil {
		err = perr
	}
	if err != nil {
		return fmt.Errorf("psengine: update: %w", err)
	}
	next.head, next.name, next.logger = cur.head, cur.name, cur.logger
	e.env.Store(&next)
	return nil
}

// Shutdown stops intake (Submit answers ErrClosed), lets queued and running
// bounties finish and deliver, then tears the workers and the engine down.
// If ctx ends first, running scans are cancelled, every bounty not answered
// is reported to the error hooks with ErrShutdown, and Shutdown returns
// ctx's error (joined with teardown errors). A scan that ignores its
// cancellation is given ScanGrace, then left running (see
// WithScanIsolation): its worker and the engine are not torn down, and the
// error says so. Later calls return the first call's result.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.shutdownOnce.Do(func() { e.shutdownErr = e.shutdown(ctx) })
	return e.shutdownErr
}

func (e *Engine) shutdown(ctx context.Context) error {
	e.gate.Lock()
	e.closed.Store(true)
	e.gate.Unlock()
	var errs []error
	drained := make(chan struct{})
	go func() {
		if e.ownBroker != nil {
			e.ownBroker.Close()
			_ = e.ownBroker.Drain(e.hard)
		}
		e.inflight.wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-ctx.Done():
		errs = append(errs, context.Cause(ctx))
		e.stopHard()
		if e.ownBroker != nil {
			for _, job := range e.ownBroker.Abandon() {
				e.reportError(context.WithoutCancel(ctx), job.Bounty, fmt.Errorf("%w: %s (still queued)", ErrShutdown, job.Bounty.ID))
			}
		}
		for _, w := range e.workers {
			w.expireRun(ErrShutdown)
		}
		// Running scans return promptly, or are settled without them
		// ScanGrace later (see bountyRun.overrun).
		<-drained
	}
	e.stopBG()
	if e.stuck.Load() == 0 {
		e.consumers.Wait()
	} // else a consumer may be inside a scan that ignores its ctx: not waited for
	busy := map[*worker]bool{}
	for _, w := range e.workers {
		if w.held.Load() {
			busy[w] = true
			errs = append(errs, fmt.Errorf("worker %d: a scan that ignores its context is still running; not torn down", w.id))
			continue
		}
		w.stopRunner()
		w.stopTimer()
	}

	// Teardown gets its own context: the caller's may be over, yet
	// resources (daemons, servers) must still be released.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if t, ok := e.orig.(WorkerTeardown); ok {
		for _, w := range e.workers {
			if !w.ready || busy[w] {
				continue
			}
			var err error
			if perr := pipeline.Protect(func() { err = t.TeardownWorker(tctx, w.env) }); perr != nil {
				err = perr
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("worker %d teardown: %w", w.id, err))
			}
		}
	}
	if t, ok := e.orig.(EngineTeardown); ok && e.env.Load() != nil && len(busy) == 0 {
		var err error
		if perr := pipeline.Protect(func() { err = t.TeardownEngine(tctx, e.Env()) }); perr != nil {
			err = perr
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("engine teardown: %w", err))
		}
	}
	e.stopHard()
	return errors.Join(errs...)
}

// counter counts work under way. Unlike a sync.WaitGroup it may be
// incremented from zero while wait is waiting (the broker's consumers keep
// handling jobs while Shutdown waits). add and done are one atomic
// operation each unless someone waits.
type counter struct {
	n       atomic.Int64
	waiters atomic.Int32
	mu      sync.Mutex
	idle    []chan struct{}
}

func (c *counter) add() { c.n.Add(1) }

func (c *counter) done() {
	if c.n.Add(-1) == 0 && c.waiters.Load() > 0 {
		c.mu.Lock()
		if c.n.Load() == 0 {
			for _, ch := range c.idle {
				close(ch)
			}
			c.idle = nil
		}
		c.mu.Unlock()
	}
}

// wait returns once the count is zero (at once when it is now).
func (c *counter) wait() {
	ch := make(chan struct{})
	c.mu.Lock()
	c.idle = append(c.idle, ch)
	c.waiters.Add(1)
	if c.n.Load() == 0 { // done saw no waiter, or has yet to look
		for _, ch := range c.idle {
			close(ch)
		}
		c.idle = nil
	}
	c.mu.Unlock()
	<-ch
	c.waiters.Add(-1)
}
