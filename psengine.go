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
	"golang.org/x/sync/errgroup"
)

// Defaults of the options.
const (
	DefaultDeliveryMargin = 5 * time.Second
	DefaultLocalTTL       = 5 * time.Minute
	// LateScanWindow is how long a scan may take when its bounty has
	// already expired, which happens only with WithDiscardExpired(false)
	// (WithTimeout still caps it). A bounty with less than the delivery
	// margin left is scanned within what remains.
	LateScanWindow = 30 * time.Second
)

// Engine answers bounties with a Scanner. Make one with New; it is safe for
// concurrent use. Its setup (Start) runs once, on the first call that needs
// it; Shutdown drains it and runs the teardowns.
type Engine struct {
	orig    Scanner // as given: the optional interfaces are looked up on it
	scanner Scanner // wrapped in the middleware
	cfg     config

	// front runs fetch -> identify -> accept -> scan under the bounty's
	// deadline; back runs bid -> enrich -> validate. Listed once in New.
	front, back []step

	startOnce sync.Once
	startErr  error       // Start's result, to read once started is true
	started   atomic.Bool // Start has returned
	env       atomic.Pointer[Env]

	slots   chan *worker // the free workers
	workers []*worker

	broker    Broker
	ownBroker *MemoryBroker

	// gate orders Shutdown against the calls and consumers it waits for:
	// they are counted (calls, consumers) only while closed is false.
	gate      sync.RWMutex
	closed    bool
	calls     sync.WaitGroup // Analyze*, AnalyzeBounty calls under way
	consumers sync.WaitGroup // goroutines consuming a broker
	// intake ends when Shutdown begins (Serve's consumers take no new job);
	// hard ends, with cause ErrShutdown, when Shutdown gives up: every
	// bounty still running is cancelled.
	intake, hard context.Context
	stopIntake   context.CancelFunc
	stopHard     context.CancelCauseFunc
	abandoned    atomic.Int32 // scans walked away from that have not returned
	procs        *children    // WithProcessWorkers
	tel          telemetry
	envs         envs // the Env generations (see Update)

	shutdownOnce sync.Once
	shutdownErr  error
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
		window:         DefaultLocalTTL,
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
	e.front, e.back = e.frontSteps(), e.backSteps()
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
	e.intake, e.stopIntake = context.WithCancel(context.Background())
	e.hard, e.stopHard = context.WithCancelCause(context.Background())
	if cfg.process != nil {
		e.procs = &children{cfg: *cfg.process}
	}
	e.takeOverAsChild()
	e.tel = e.newTelemetry()
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
	e.startOnce.Do(func() {
		e.startErr = e.start(ctx)
		e.started.Store(true)
	})
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
	// Temp files a crashed run of an engine left (their process is gone).
	for _, p := range []fetch.Policy{e.cfg.policy, e.cfg.localPolicy} {
		removed, err := fetch.RemoveStale(p.TempDir, p.TempPrefix)
		if err != nil {
			log.WarnContext(ctx, "removing stale temp files", "err", err)
		}
		for _, f := range removed {
			log.InfoContext(ctx, "removed a temp file a crashed run left", "path", f)
		}
	}

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

	head, err := e.head(ctx, env)
	if err != nil {
		return kind(ErrSetup, fmt.Errorf("describe: %w", err))
	}
	env.head = head
	var snap envSnapshot
	if e.procs != nil {
		if snap, err = env.snapshot(); err != nil {
			return kind(ErrSetup, fmt.Errorf("process backend: %w", err))
		}
	}
	e.setEnv(&env, snap)
	if e.procs != nil {
		if err := e.startChildren(ctx); err != nil {
			return err
		}
	}

	log.Info("engine started", "engine", e.cfg.name, "workers", e.cfg.workers,
		"product", head.Product, "vendor_version", head.Scanner.VendorVersion)
	if e.ownBroker != nil {
		e.startOwnConsumers()
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

// startOwnConsumers runs WithWorkers consumers on the in-process broker.
// They take jobs until the broker is closed and drained (Shutdown), or
// Shutdown gives up.
func (e *Engine) startOwnConsumers() {
	e.gate.RLock()
	defer e.gate.RUnlock()
	if e.closed {
		return
	}
	h := e.handler(e.hard)
	for range e.cfg.workers {
		e.consumers.Go(func() {
			if err := e.broker.Consume(e.hard, h); err != nil && e.hard.Err() == nil {
				e.cfg.logger.Error("consumer stopped", "err", err)
			}
		})
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
// returns when the scan does, or ScanGrace later if it ignores its ctx (see
// ScanGrace).
func (e *Engine) Analyze(ctx context.Context, uri string) (Result, error) {
	return e.AnalyzeArtifact(ctx, FileArtifact, uri)
}

// AnalyzeURL answers a URL artifact: the URL itself is what is scanned.
func (e *Engine) AnalyzeURL(ctx context.Context, u string) (Result, error) {
	return e.AnalyzeArtifact(ctx, URLArtifact, u)
}

// AnalyzeArtifact is Analyze for an artifact of type t.
func (e *Engine) AnalyzeArtifact(ctx context.Context, t ArtifactType, uri string) (Result, error) {
	res := e.call(ctx, func(w *worker) Result { return e.analyzeLocal(ctx, w, t, uri) })
	return res, res.Err
}

// AnalyzeBounty answers b: fetch (under the fetch policy), identify, accept,
// scan, bid, enrich, validate, deliver (when b has a response URL), hooks.
// It blocks until the answer is delivered or given up, and honours ctx.
// The error is res.Err (see Analyze).
func (e *Engine) AnalyzeBounty(ctx context.Context, b Bounty) (Result, error) {
	res := e.call(ctx, func(w *worker) Result { return e.process(ctx, w, b, nil) })
	return res, res.Err
}

// AnalyzeAll answers local artifacts (see Analyze) with up to WithWorkers at
// once and returns the results in input order.
func (e *Engine) AnalyzeAll(ctx context.Context, uris []string) []Result {
	out := make([]Result, 0, len(uris))
	for res := range e.AnalyzeEach(ctx, FileArtifact, slices.Values(uris)) {
		out = append(out, res)
	}
	return out
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

// call runs fn on a worker for a caller from outside; it is refused once
// Shutdown began, which waits for the calls it let in.
func (e *Engine) call(ctx context.Context, fn func(w *worker) Result) Result {
	e.gate.RLock()
	if e.closed {
		e.gate.RUnlock()
		return Result{Err: ErrClosed}
	}
	e.calls.Add(1)
	e.gate.RUnlock()
	defer e.calls.Done()
	return e.withWorker(ctx, fn)
}

// withWorker starts the engine, takes a free worker, runs fn and gives the
// worker back. It gives up when ctx ends or Shutdown gives up first.
func (e *Engine) withWorker(ctx context.Context, fn func(w *worker) Result) Result {
	if err := e.Start(ctx); err != nil {
		return Result{Err: err}
	}
	var w *worker
	select {
	case w = <-e.slots: // a free worker: no need to watch ctx
	default:
		select {
		case w = <-e.slots:
		case <-ctx.Done():
			return Result{Err: context.Cause(ctx)}
		case <-e.hard.Done():
			return Result{Err: ErrShutdown}
		}
	}
	defer func() { e.slots <- w }()
	return fn(w)
}

// bountyContext returns the context of a bounty's fetch and scan on w: it
// has parent's values and ends when parent does, at deadline unless it is
// zero, or when Shutdown gives up (which cancels w's). At the deadline its
// Err, and that of every context derived from it, is
// context.DeadlineExceeded, with ErrTimeout as the cause. The caller calls
// the returned function when the bounty is done.
func (e *Engine) bountyContext(parent context.Context, w *worker, deadline time.Time) (context.Context, context.CancelFunc) {
	var ctx context.Context
	var cancel context.CancelFunc
	if deadline.IsZero() {
		ctx, cancel = context.WithCancel(parent)
	} else {
		ctx, cancel = context.WithDeadlineCause(parent, deadline, ErrTimeout)
	}
	w.mu.Lock()
	w.cancel = cancel
	w.mu.Unlock()
	if e.hard.Err() != nil { // Shutdown gave up before w.cancel was set
		cancel()
	}
	return ctx, func() {
		w.mu.Lock()
		w.cancel = nil
		w.mu.Unlock()
		cancel()
	}
}

// cancelRunning cancels the bounty every worker is processing (when
// Shutdown gives up).
func (e *Engine) cancelRunning() {
	for _, w := range e.workers {
		w.mu.Lock()
		if w.cancel != nil {
			w.cancel()
		}
		w.mu.Unlock()
	}
}

// givenUp is the cause of a bounty's end that is not its deadline: the
// caller's (or consumer's) cause, or ErrShutdown when Shutdown gave up.
func (e *Engine) givenUp(ctx context.Context) error {
	if e.hard.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
		return ErrShutdown
	}
	return context.Cause(ctx)
}

// scanDeadline is the deadline of fetch and scan for a bounty expiring at
// expiration (zero: never): the expiration less the delivery margin, and
// the host's timeout (zero: none).
func (e *Engine) scanDeadline(expiration, now time.Time) time.Time {
	var deadline time.Time
	if !expiration.IsZero() {
		deadline = expiration.Add(-e.cfg.margin)
		switch {
		case !expiration.After(now):
			// Expired, yet scanned anyway (WithDiscardExpired(false)):
			// the answer is late whatever happens, so give the scan
			// LateScanWindow rather than none.
			deadline = now.Add(LateScanWindow)
		case !deadline.After(now):
			// Less than the delivery margin left: scan within what
			// remains, never past the expiration.
			deadline = expiration
		}
	}
	if e.cfg.timeout > 0 {
		if d := now.Add(e.cfg.timeout); deadline.IsZero() || d.Before(deadline) {
			deadline = d
		}
	}
	return deadline
}

// analyzeLocal fetches a local input under its bounty's deadline, forges
// its bounty and processes it.
func (e *Engine) analyzeLocal(ctx context.Context, w *worker, t ArtifactType, uri string) (res Result) {
	ctx, span := e.tel.startBounty(ctx, Bounty{ArtifactType: t, ArtifactURI: uri})
	defer func() { e.tel.endBounty(ctx, span, res) }()
	now := time.Now()
	rctx, cancel := e.bountyContext(ctx, w, e.scanDeadline(now.Add(e.cfg.localTTL), now))
	defer cancel()
	var content *fetch.Content
	var mime string
	if t == URLArtifact {
		content, mime = fetch.FromBytes([]byte(uri)), URIListType
	} else if err := e.tel.step(rctx, "fetch", func(ctx context.Context) error {
		var err error
		content, err = e.cfg.localPolicy.Fetch(ctx, uri, "")
		return err
	}); err != nil {
		return Result{Bounty: Bounty{ArtifactType: t, ArtifactURI: uri}, Err: kind(ErrFetch, err)}
	} else {
		e.tel.fetchBytes.Add(ctx, content.Size())
		mime = DetectMIMEType(content.Head())
	}
	b := LocalBounty(t, uri, content.SHA256(), mime, now, e.cfg.localTTL)
	return e.runBounty(ctx, rctx, w, b, content, mime, nil)
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
	if e.intake.Err() != nil { // Shutdown began
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
	if job.Key == "" {
		job.Key = BountyKey(job.Bounty)
	}
	if job.Attempt < 1 {
		job.Attempt = 1
	}
	job.Bounty = e.withWindow(ctx, job.Bounty, time.Now())
	return e.broker.Submit(ctx, job)
}

// Serve runs WithWorkers consumers on the broker given by WithBroker until
// ctx ends, Shutdown begins or the broker is closed and drained, and returns
// then: nil, or the first error a consumer stopped with (the others are then
// stopped too). When ctx ends, the bounties being scanned are handed back
// to the broker unanswered; when Shutdown begins, they are answered first.
// An engine using the in-process default broker serves it by itself.
func (e *Engine) Serve(ctx context.Context) error {
	if e.ownBroker != nil {
		return errors.New("psengine: Serve needs a broker given with WithBroker; the in-process broker is served by the engine")
	}
	if err := e.Start(ctx); err != nil {
		return err
	}
	// run ends the bounties in progress; consume only stops taking new ones.
	run, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	defer context.AfterFunc(e.hard, func() { stopRun(context.Cause(e.hard)) })()
	consume, stopConsuming := context.WithCancel(run)
	defer stopConsuming()
	defer context.AfterFunc(e.intake, stopConsuming)()
	g, gctx := errgroup.WithContext(consume)

	e.gate.RLock()
	if e.closed {
		e.gate.RUnlock()
		return ErrClosed
	}
	e.consumers.Add(e.cfg.workers)
	e.gate.RUnlock()
	h := e.handler(run)
	for range e.cfg.workers {
		g.Go(func() error {
			defer e.consumers.Done()
			if err := e.broker.Consume(gctx, h); err != nil && gctx.Err() == nil {
				return fmt.Errorf("psengine: consumer stopped: %w", err)
			}
			return nil
		})
	}
	return g.Wait()
}

// handler is the broker Handler of consumers whose bounties end with run:
// a job's context keeps the values of the broker's but is cancelled only
// with run, so that a consumer told to stop taking jobs still answers the
// one it holds.
func (e *Engine) handler(run context.Context) Handler {
	return func(ctx context.Context, job Job) error {
		jctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
		defer cancel(nil)
		defer context.AfterFunc(run, func() { cancel(context.Cause(run)) })()
		return e.handle(jctx, job)
	}
}

// handle answers the job's bounty. It returns an error (redeliver) only when
// the answer could not be delivered for a reason a later attempt may fix and
// the bounty has not expired, or the bounty was given up on unanswered.
//
// A bounty is scanned once: once it has its answer, the job is handed back
// only when Shutdown interrupted the delivery, and then, with a broker that
// keeps answers (AnswerKeeper), its next delivery carries the answer, which
// is delivered again without a scan. A delivery that failed otherwise
// (refused, the expiration reached, a Retry-After beyond it) is final: it
// is reported to the error hooks, and the job is not queued again.
func (e *Engine) handle(ctx context.Context, job Job) error {
	res := e.withWorker(ctx, func(w *worker) Result { return e.process(ctx, w, job.Bounty, &job) })
	switch {
	case res.Err == nil:
		return nil
	case !res.Answered && ctx.Err() != nil:
		return res.Err // the consumer stopped mid-scan: hand the job back
	case errors.Is(res.Err, ErrMalformedBounty):
		return Permanent(res.Err)
	case !res.Answered:
		return nil // discarded by policy (expired), reported to the hooks
	case !res.Delivered && res.Bounty.ResponseURL != "" && e.hard.Err() != nil && !expired(res.Bounty, time.Now()):
		return res.Err // Shutdown cut the delivery short
	}
	return nil
}

// withWindow gives a bounty without an expiration the default window
// from now (see WithDefaultWindow), and logs it.
func (e *Engine) withWindow(ctx context.Context, b Bounty, now time.Time) Bounty {
	if b.Expiration.IsZero() {
		b.Expiration = now.Add(e.cfg.window).UTC()
		e.cfg.logger.InfoContext(ctx, "bounty without a usable expiration: answering within the default window",
			"bounty", b.ID.String(), "window", e.cfg.window, "expiration", b.Expiration)
	}
	return b
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

// Shutdown stops intake (Submit and the Analyze calls answer ErrClosed,
// Serve's consumers take no new job), lets queued and running bounties
// finish and deliver, then tears the workers and the engine down. If ctx
// ends first, running bounties are cancelled (their scans get ScanGrace to
// return, then are walked away from), every bounty not answered is reported
// to the error hooks with ErrShutdown, and Shutdown returns ctx's cause
// (joined with teardown errors). A scan still running then (it ignores its
// context) tears down its worker Env when it returns; the engine's
// teardown is skipped, and the error says so. Later calls return the first
// call's result.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.shutdownOnce.Do(func() { e.shutdownErr = e.shutdown(ctx) })
	return e.shutdownErr
}

func (e *Engine) shutdown(ctx context.Context) error {
	e.gate.Lock()
	e.closed = true
	e.gate.Unlock()
	e.stopIntake()
	var errs []error
	drained := make(chan struct{})
	go func() {
		if e.ownBroker != nil {
			e.ownBroker.Close() // its consumers return once it is drained
		}
		e.consumers.Wait()
		e.calls.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-ctx.Done():
		errs = append(errs, context.Cause(ctx))
		// Abandon before cancelling: a running job cut off now is then
		// settled as final (its handler reports it), never queued again
		// for redelivery and reported a second time here.
		var queued []Job
		if e.ownBroker != nil {
			queued = e.ownBroker.Abandon()
		}
		e.stopHard(ErrShutdown)
		e.cancelRunning()
		for _, job := range queued {
			res := Result{Bounty: job.Bounty, Err: fmt.Errorf("%w: %s (still queued)", ErrShutdown, job.Bounty.ID)}
			e.finish(ctx, &res)
		}
		<-drained // running bounties end at most ScanGrace later
	}
	e.stopHard(ErrShutdown)

	// Every worker is idle now. Teardown gets its own context: the
	// caller's may be over, yet resources (daemons, servers) must still be
	// released.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if e.procs != nil {
		e.stopChildren(tctx) // each runs its own WorkerTeardown
	} else if t, ok := e.orig.(WorkerTeardown); ok {
		for _, w := range e.workers {
			if !w.ready {
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
	if n := e.abandoned.Load(); n > 0 {
		errs = append(errs, fmt.Errorf("psengine: %d scans that ignore their context are still running: each tears down its worker Env when it returns; the engine is not torn down", n))
	} else if t, ok := e.orig.(EngineTeardown); ok && e.env.Load() != nil {
		e.envs.release.Wait()
		var err error
		if perr := pipeline.Protect(func() { err = t.TeardownEngine(tctx, e.Env()) }); perr != nil {
			err = perr
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("engine teardown: %w", err))
		}
	}
	return errors.Join(errs...)
}
