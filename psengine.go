package psengine

import (
	"cmp"
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

	"github.com/polyswarm/psengine/broker"
	"github.com/polyswarm/psengine/deliver"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/fetch"
	"github.com/polyswarm/psengine/internal/telemetry"
	"github.com/polyswarm/psengine/internal/workerproc"
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
//
// A bounty goes through stages that each hold only the resource they wait
// on (see stages.go): fetch slots, workers (scans), the broker's writes, the
// deliverer's connections. WithInFlight bounds how many bounties are between
// their first and last stage at once.
type Engine struct {
	orig    Scanner // as given: the optional interfaces are looked up on it
	scanner Scanner // wrapped in the middleware
	cfg     config

	startOnce sync.Once
	startErr  error       // Start's result, to read once started is true
	started   atomic.Bool // Start has returned
	env       atomic.Pointer[Env]

	slots   chan *worker  // the free workers: a scan holds one
	workers []*worker     // all of them
	fetches chan struct{} // a fetch holds a slot
	marked  chan struct{} // a job marked scanning (broker.ScanMarker) and not yet scanned holds a slot
	// alone is held shared by every bounty in progress and exclusively by
	// a suspect job (broker.Job.Suspect) until its answer is kept: a suspect is
	// handled alone, so that a process death is charged to it.
	alone sync.RWMutex

	broker    broker.Broker
	ownBroker *broker.Memory

	// gate orders Shutdown against the calls and consumers it waits for:
	// they are counted (calls, consumers) only while closed is false.
	gate      sync.RWMutex
	closed    bool
	calls     sync.WaitGroup // Analyze*, AnalyzeBounty calls under way
	consumers sync.WaitGroup // goroutines consuming a broker
	// intake ends when Shutdown begins (Submit refuses); hard ends, with
	// cause ErrShutdown, when Shutdown gives up: every bounty still in
	// progress is cut short (a job's is handed back to its broker).
	intake, hard context.Context
	stopIntake   context.CancelFunc
	stopHard     context.CancelCauseFunc
	abandoned    atomic.Int32 // scans walked away from that have not returned
	runner       scanRunner   // where scans run: in process, or in children
	tel          telemetry.Telemetry
	envs         envs // the Env generations (see Update)

	results *results // WithResultCache (cache.go); nil without

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
		inFlight:       DefaultInFlight,
		fetchers:       DefaultFetchers,
		deliveryWindow: DefaultDeliveryWindow,
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
	cfg.name = cmp.Or(cfg.name, "engine")
	cfg.localPolicy = localPolicy(cfg.policy)
	if cfg.deliverer == nil {
		cfg.deliverer = HTTPDeliverer(&deliver.Client{Logger: cfg.logger})
	}

	e := &Engine{orig: scanner, scanner: scanner, cfg: cfg}
	for i := len(cfg.middleware) - 1; i >= 0; i-- {
		e.scanner = cfg.middleware[i](e.scanner)
	}
	e.fetches = make(chan struct{}, cfg.fetchers)
	e.marked = make(chan struct{}, maxMarked(cfg.workers))
	e.slots = make(chan *worker, cfg.workers)
	for i := range cfg.workers {
		w := &worker{id: i + 1}
		e.workers = append(e.workers, w)
		e.slots <- w
	}
	e.broker = cfg.broker
	if e.broker == nil {
		e.ownBroker = broker.NewMemory(broker.MemoryConfig{Capacity: max(1024, cfg.inFlight)})
		e.broker = e.ownBroker
	}
	e.intake, e.stopIntake = context.WithCancel(context.Background())
	e.hard, e.stopHard = context.WithCancelCause(context.Background())
	e.runner = inProcess{e}
	if pc := cfg.process; pc != nil {
		e.runner = inChildren{e: e, pool: workerproc.NewPool(workerproc.Config{
			Name: cfg.name, Args: pc.Args, Env: pc.Env, StartTimeout: pc.StartTimeout,
			MaxTasks: pc.MaxTasksPerChild, MaxMemory: pc.MaxChildMemory, Grace: e.grace(),
			Sandbox: workerproc.SandboxConfig{User: pc.Sandbox.User, Procs: pc.Sandbox.MaxProcs},
			Logger:  cfg.logger,
			Restarted: func(reason string) {
				e.tel.ChildRestarted(reason)
			},
			Stopping: func() bool { return e.hard.Err() != nil || e.intake.Err() != nil && e.ownBroker == nil },
		})}
	}
	e.takeOverAsChild()
	e.tel = e.newTelemetry()
	e.results = e.newResults() // cache.go
	return e
}

// maxMarked is how many jobs may be marked scanning (broker.ScanMarker) and not
// yet scanned, for workers: enough that the marks' writes (a group commit
// each) keep the workers busy, few enough that a process death makes few
// suspects to run alone.
func maxMarked(workers int) int { return max(4*workers, 32) }

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
		if err := protect(func() (err error) { out, err = s.SetupEngine(ctx, env); return err }); err != nil {
			return kind(ErrSetup, fmt.Errorf("engine setup: %w", err))
		}
		env = out
	}

	head, err := e.head(ctx, env)
	if err != nil {
		return kind(ErrSetup, fmt.Errorf("describe: %w", err))
	}
	env.head = head
	gen, err := e.newGeneration(&env)
	if err != nil {
		return kind(ErrSetup, fmt.Errorf("process backend: %w", err))
	}
	e.setEnv(gen)
	e.retainResults(ctx, nil, env) // cache.go
	if err := e.runner.start(ctx, gen); err != nil {
		return err
	}

	log.InfoContext(ctx, "engine started", "engine", e.cfg.name, "workers", e.cfg.workers,
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

// startOwnConsumers runs WithInFlight consumers on the in-process broker.
// They take jobs until the broker is closed and drained (Shutdown), or
// Shutdown gives up.
func (e *Engine) startOwnConsumers() {
	e.gate.RLock()
	defer e.gate.RUnlock()
	if e.closed {
		return
	}
	h := broker.Handler(e.handle)
	for range e.cfg.inFlight {
		e.consumers.Go(func() {
			if err := e.broker.Consume(e.hard, h); err != nil && e.hard.Err() == nil {
				e.cfg.logger.ErrorContext(e.hard, "consumer stopped", "err", err)
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
	res := e.call(ctx, func() Result { return e.analyzeLocal(ctx, t, uri) })
	return res, res.Err
}

// AnalyzeBounty answers b: fetch (under the fetch policy), identify, accept,
// scan, bid, enrich, validate, deliver (when b has a response URL, until
// its expiration or the delivery window, whichever is first), hooks. It
// blocks until the answer is delivered or given up, and honours ctx (the
// delivery goes on when ctx ends after the answer was made). The error is
// res.Err (see Analyze).
func (e *Engine) AnalyzeBounty(ctx context.Context, b Bounty) (Result, error) {
	res := e.call(ctx, func() Result {
		now := time.Now()
		if err := b.Validate(); err != nil {
			res := Result{Bounty: b, Err: err}
			e.finish(ctx, &res)
			return res
		}
		b = e.withWindow(ctx, b, now)
		if e.cfg.discardExpired && b.Expired(now) {
			return e.discardExpiredBounty(ctx, b, now)
		}
		return e.process(ctx, request{bounty: b}, true, now)
	})
	return res, res.Err
}

// AnalyzeAll answers local artifacts (see Analyze), WithInFlight at once at
// most, and returns the results in input order.
func (e *Engine) AnalyzeAll(ctx context.Context, uris []string) []Result {
	out := make([]Result, 0, len(uris))
	for res := range e.AnalyzeEach(ctx, FileArtifact, slices.Values(uris)) {
		out = append(out, res)
	}
	return out
}

// AnalyzeEach answers local artifacts of type t (see AnalyzeArtifact),
// WithInFlight at once at most (scans: WithWorkers), yielding each result
// in input order as soon as it and those before it are ready. Stopping
// early cancels the rest.
func (e *Engine) AnalyzeEach(ctx context.Context, t ArtifactType, uris iter.Seq[string]) iter.Seq[Result] {
	return each(ctx, e, uris, func(ctx context.Context, uri string) (Result, error) {
		res, _ := e.AnalyzeArtifact(ctx, t, uri)
		return res, nil
	})
}

// AnalyzeBounties answers bounties (see AnalyzeBounty), WithInFlight at
// once at most, yielding results in input order.
func (e *Engine) AnalyzeBounties(ctx context.Context, bounties iter.Seq[Bounty]) iter.Seq[Result] {
	return each(ctx, e, bounties, func(ctx context.Context, b Bounty) (Result, error) {
		res, _ := e.AnalyzeBounty(ctx, b)
		return res, nil
	})
}

func each[In any](ctx context.Context, e *Engine, ins iter.Seq[In], s pipeline.Stage[In, Result]) iter.Seq[Result] {
	return func(yield func(Result) bool) {
		for res, err := range pipeline.Stream(ctx, e.cfg.inFlight, ins, s) {
			if err != nil { // only a panic outside the pipeline's own recovery
				res = Result{Err: err}
			}
			if !yield(res) {
				return
			}
		}
	}
}

// call runs fn for a caller from outside, once the engine started; it is
// refused once Shutdown began, which waits for the calls it let in.
func (e *Engine) call(ctx context.Context, fn func() Result) Result {
	e.gate.RLock()
	if e.closed {
		e.gate.RUnlock()
		return Result{Err: ErrClosed}
	}
	e.calls.Add(1)
	e.gate.RUnlock()
	defer e.calls.Done()
	if err := e.Start(ctx); err != nil {
		return Result{Err: err}
	}
	e.alone.RLock()
	defer e.alone.RUnlock()
	return fn()
}

// bountyContext returns the context of a bounty's fetch and scan: it has
// parent's values and ends when parent does, at deadline unless it is zero,
// or, for a caller's bounty (not a consumer's, whose parent ends first),
// when Shutdown gives up (cause ErrShutdown). At the deadline its Err, and
// that of every context derived from it, is context.DeadlineExceeded, with
// ErrTimeout as the cause.
func (e *Engine) bountyContext(parent context.Context, deadline time.Time, caller bool) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	stop := func() bool { return false }
	if caller {
		stop = context.AfterFunc(e.hard, func() { cancel(context.Cause(e.hard)) })
	}
	var dctx context.Context
	var dcancel context.CancelFunc
	if deadline.IsZero() {
		dctx, dcancel = ctx, func() {}
	} else {
		dctx, dcancel = context.WithDeadlineCause(ctx, deadline, ErrTimeout)
	}
	return dctx, func() {
		dcancel()
		stop()
		cancel(nil)
	}
}

// detached returns the context of a delivery for a caller who may go away
// once the answer is made: ctx's values, ended only by Shutdown giving up
// (and the delivery's own deadline). The caller calls release when done.
func (e *Engine) detached(ctx context.Context) (dctx context.Context, release func()) {
	return outliving(ctx, e.hard, 0)
}

// graced returns a context for the delivery of a job's answer: it ends
// grace (see grace) after the consumer's ctx does (Shutdown's deadline),
// with its cause. A POST under way at the deadline may have reached the
// receiver already: cut at once, the kept answer would be POSTed again
// after the restart; given the grace, it usually finishes, and the wait
// stays bounded. release frees it.
func (e *Engine) graced(ctx context.Context) (gctx context.Context, release func()) {
	return outliving(ctx, ctx, e.grace())
}

// outliving returns a context with ctx's values that ends, with end's
// cause, after (0: at once) once end ends; release frees it.
func outliving(ctx, end context.Context, after time.Duration) (context.Context, func()) {
	out, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(end, func() {
		if after <= 0 {
			cancel(context.Cause(end))
			return
		}
		time.AfterFunc(after, func() { cancel(context.Cause(end)) })
	})
	return out, func() { stop(); cancel(nil) }
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
func (e *Engine) analyzeLocal(ctx context.Context, t ArtifactType, uri string) Result {
	now := time.Now()
	b := Bounty{ArtifactType: t, ArtifactURI: uri}
	var content *fetch.Content
	var mime string
	if t == URLArtifact {
		content, mime = fetch.FromBytes([]byte(uri)), URIListType
	} else {
		rctx, cancel := e.bountyContext(ctx, e.scanDeadline(now.Add(e.cfg.localTTL), now), true)
		err := e.tel.Step(rctx, "fetch", func(ctx context.Context) error {
			if err := acquire(ctx, e.fetches); err != nil {
				return err
			}
			defer func() { <-e.fetches }()
			var err error
			content, err = e.cfg.localPolicy.Fetch(ctx, uri, "")
			return err
		})
		cancel()
		if err != nil {
			res := Result{Bounty: b, Err: kind(ErrFetch, err)}
			e.finish(ctx, &res)
			return res
		}
		e.tel.Fetched(ctx, content.Size())
		mime = DetectMIMEType(content.Head())
	}
	b = LocalBounty(t, uri, content.SHA256(), mime, now, e.cfg.localTTL)
	return e.process(ctx, request{bounty: b, content: content, mime: mime}, true, now)
}

// process answers one bounty: fetch and scan under its deadline (and ctx),
// the answer, kept with the broker when a job brought it, delivered from
// accepted (see deliverStage), and the hooks. A bounty given up on before
// its answer (ctx ended, or Shutdown gave up) gets none. The delivery ends
// with ctx, unless detach: then only Shutdown giving up ends it (a caller
// who goes away once the answer is made does not take it away).
func (e *Engine) process(ctx context.Context, r request, detach bool, accepted time.Time) (res Result) {
	ctx, span := e.startBounty(ctx, r.bounty)
	defer func() { e.endBounty(ctx, span, res) }()
	dctx := ctx
	if detach {
		var release func()
		dctx, release = e.detached(ctx)
		defer release()
	}
	unlockAlone := func() {}
	if r.job != nil && r.job.Suspect {
		// Alone: no other bounty is in progress from here until its
		// answer is kept. Then it takes a share, like any bounty, for its
		// delivery: another suspect's scan, which may end the process,
		// does not overlap the delivery of an answer already kept (which
		// would then be POSTed again). The caller holds no share of alone.
		e.alone.Lock()
		unlockAlone = sync.OnceFunc(func() { e.alone.Unlock(); e.alone.RLock() })
		defer func() { unlockAlone(); e.alone.RUnlock() }()
	}
	res = Result{Bounty: r.bounty}
	s, err := e.produce(ctx, r)
	if err != nil {
		res.Err = err
		e.finish(ctx, &res)
		return res
	}
	a, _ := e.answerStage(ctx, s)
	res.Analysis, res.Answered, res.Err = a.answer.Analysis, true, a.err
	e.keepStage(ctx, r.job, a)
	unlockAlone() // its answer is kept: a suspect is no danger from here on
	if r.job != nil {
		var release func()
		dctx, release = e.graced(dctx)
		defer release()
	}
	if err := e.deliverStage(dctx, accepted, a); err != nil {
		res.Err = errors.Join(res.Err, err)
	} else if a.bounty.ResponseURL != "" {
		res.Delivered = true
	}
	e.finish(ctx, &res)
	return res
}

// produce runs the fetch and scan stages under the bounty's deadline: the
// analysis, or the special result of their failure. The error is set, and
// there is no analysis, only when the bounty was given up on.
func (e *Engine) produce(ctx context.Context, r request) (scanned, error) {
	rctx, cancel := e.bountyContext(ctx, e.scanDeadline(r.bounty.Expiration, time.Now()), r.job == nil)
	defer cancel()
	f, err := e.fetchStage(rctx, r)
	defer func() {
		if f.content != nil {
			_ = f.content.Close()
		}
	}()
	var s scanned
	if err == nil {
		s, err = e.scanStage(rctx, f)
	}
	if err != nil && rctx.Err() != nil && !deadlinePassed(rctx) {
		// The caller, the consumer or Shutdown gave up on this bounty
		// (not its deadline): no answer, so that a broker hands it to
		// another worker rather than take an "unknown" for it.
		return scanned{}, fmt.Errorf("bounty abandoned before its answer: %w", e.givenUp(rctx))
	}
	if err != nil { // the fetch failed: answered CANNOT_FETCH
		s = scanned{bounty: r.bounty, analysis: answerFor(err), err: err, gen: e.acquireEnv()}
	}
	return s, nil
}

// Submit queues b on the broker and returns once the broker accepted it;
// the scan, the delivery of the answer to b's response URL and the hooks
// then run by themselves, with nobody waiting. It returns an error wrapping
// ErrMalformedBounty for an invalid bounty, ErrExpired for an expired one
// (unless WithDiscardExpired(false)), ErrDuplicate for one the broker has
// already, ErrQueueFull when the queue cannot take it now (retry later),
// ErrClosed after Shutdown.
func (e *Engine) Submit(ctx context.Context, b Bounty) error {
	return e.SubmitJob(ctx, broker.Job{Bounty: b})
}

// SubmitJob is Submit with a chosen job ID (for deduplication). A job
// without Accepted is made here (see broker.NewJob): validated, windowed, keyed;
// one with Accepted was, and goes to the broker as it is.
func (e *Engine) SubmitJob(ctx context.Context, job broker.Job) error {
	if e.intake.Err() != nil { // Shutdown began
		return ErrClosed
	}
	now := time.Now()
	if job.Accepted.IsZero() {
		if job.Bounty.Expiration.IsZero() && job.Bounty.Validate() == nil {
			e.cfg.logger.InfoContext(ctx, "bounty without a usable expiration: answering within the default window",
				"bounty", job.Bounty.ID.String(), "window", e.cfg.window)
		}
		made, err := broker.NewJob(job.ID, job.Bounty, now, e.cfg.window)
		if err != nil {
			return err
		}
		if job.Key != "" {
			made.Key = job.Key
		}
		job = made
	}
	if e.cfg.discardExpired && job.Bounty.Expired(now) {
		return expiredError(job.Bounty, now)
	}
	if err := e.Start(ctx); err != nil {
		return err
	}
	return e.broker.Submit(ctx, job)
}

// Serve runs WithInFlight consumers on the broker given by WithBroker until
// ctx ends, Shutdown gives up or the broker has nothing left for them (it
// was closed and drained), and returns then: nil, or the first error a
// consumer stopped with (the others are then stopped too). When ctx ends or
// Shutdown gives up, the bounties in progress are handed back to the broker
// (their attempt not counted), unanswered or with their kept answer. An
// engine using the in-process default broker serves it by itself.
func (e *Engine) Serve(ctx context.Context) error {
	if e.ownBroker != nil {
		return errors.New("psengine: Serve needs a broker given with WithBroker; the in-process broker is served by the engine")
	}
	if err := e.Start(ctx); err != nil {
		return err
	}
	run, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	defer context.AfterFunc(e.hard, func() { stop(context.Cause(e.hard)) })()
	g, gctx := errgroup.WithContext(run)

	e.gate.RLock()
	if e.closed {
		e.gate.RUnlock()
		return ErrClosed
	}
	e.consumers.Add(e.cfg.inFlight)
	e.gate.RUnlock()
	for range e.cfg.inFlight {
		g.Go(func() error {
			defer e.consumers.Done()
			if err := e.broker.Consume(gctx, e.handle); err != nil && gctx.Err() == nil {
				return fmt.Errorf("psengine: consumer stopped: %w", err)
			}
			return nil
		})
	}
	return g.Wait()
}

// handle answers the job's bounty, with ctx the consumer's: it ends when
// the consumer stops (the host's ctx, or Shutdown giving up). It returns an
// error, which hands the job back to its broker (its attempt not counted),
// only when ctx ended before the answer was delivered: the job then comes
// back unanswered, or with the answer kept (broker.AnswerKeeper), which is then
// delivered without a scan. Otherwise the job is settled: answered and
// delivered, or the delivery given up (refused, the expiration or the
// delivery window passed), which is reported to the error hooks.
//
// A suspect job (broker.Job.Suspect) is handled alone; a job on its last call
// (broker.Job.Final) is answered unknown without a scan.
func (e *Engine) handle(ctx context.Context, job broker.Job) error {
	now := time.Now()
	b := e.withWindow(ctx, job.Bounty, now) // for a job not made by broker.NewJob
	accepted := job.Accepted
	if accepted.IsZero() {
		accepted = now
	}
	if !job.Suspect {
		e.alone.RLock()
		defer e.alone.RUnlock()
	}
	var res Result
	switch {
	case job.Final != "":
		res = e.lastCall(ctx, job, b, accepted)
	case e.cfg.discardExpired && b.Expired(now):
		res = e.discardExpiredBounty(ctx, b, now)
	case job.Answer != nil:
		// Answered already; the delivery did not finish: deliver again.
		e.cfg.logger.InfoContext(ctx, "delivering the answer kept for a bounty, without scanning it again",
			"bounty", b.ID.String(), "attempt", job.Attempt)
		res = e.deliverKept(ctx, answered{bounty: b, answer: NewAnswer(b, *job.Answer)}, accepted)
	default:
		res = e.process(ctx, request{bounty: b, job: &job}, false, accepted)
	}
	switch {
	case res.Err == nil:
		return nil
	case !res.Answered && errors.Is(res.Err, ErrExpired):
		return nil // discarded by policy, reported to the hooks
	case !res.Answered:
		return res.Err // cut short before its answer: handed back (ctx is done)
	case ctx.Err() != nil && !res.Delivered && b.ResponseURL != "" && !errors.Is(res.Err, ErrPermanent):
		return res.Err // cut short during its delivery: handed back with its kept answer
	}
	return nil
}

// lastCall answers a job its broker gives up on: unknown, SKIPPED, with the
// broker's reason, without a scan, delivered while its expiration allows.
func (e *Engine) lastCall(ctx context.Context, job broker.Job, b Bounty, accepted time.Time) Result {
	why := fmt.Errorf("%w: %s", ErrGivenUp, job.Final)
	if b.Expired(time.Now()) {
		res := Result{Bounty: b, Err: fmt.Errorf("%w; expired, so not answered", why)}
		e.finish(ctx, &res)
		return res
	}
	a, _ := e.answerStage(ctx, scanned{bounty: b, analysis: Skipped(why), err: why, gen: e.acquireEnv()})
	return e.deliverKept(ctx, a, accepted)
}

// deliverKept delivers an answer made earlier (without a scan now) and
// runs the hooks; a.err is the error the answer stands for, if any.
func (e *Engine) deliverKept(ctx context.Context, a answered, accepted time.Time) (res Result) {
	b := a.bounty
	ctx, span := e.startBounty(ctx, b)
	defer func() { e.endBounty(ctx, span, res) }()
	res = Result{Bounty: b, Analysis: a.answer.Analysis, Answered: true, Err: a.err}
	dctx, release := e.graced(ctx)
	defer release()
	if err := e.deliverStage(dctx, accepted, a); err != nil {
		res.Err = errors.Join(res.Err, err)
	} else if b.ResponseURL != "" {
		res.Delivered = true
	}
	e.finish(ctx, &res)
	return res
}

// discardExpiredBounty reports a bounty found expired before its scan.
func (e *Engine) discardExpiredBounty(ctx context.Context, b Bounty, now time.Time) Result {
	res := Result{Bounty: b, Err: expiredError(b, now)}
	e.finish(ctx, &res)
	return res
}

// expiredError says that b was found expired at now (ErrExpired).
func expiredError(b Bounty, now time.Time) error {
	return fmt.Errorf("%w: at %s, %s after its expiration", ErrExpired,
		now.UTC().Format(time.RFC3339), now.Sub(b.Expiration).Round(time.Millisecond))
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
		err := protect(func() (err error) { out, err = c.Run(ctx, e.Env(), args); return err })
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

// Shutdown stops intake (Submit and the Analyze calls answer ErrClosed;
// the broker is closed), lets queued and running bounties finish and
// deliver, then tears the workers and the engine down. If ctx ends first,
// every bounty in progress is cut short: jobs are handed back to their
// broker (a durable one keeps them, with their answer if it was kept, for
// the next process; the in-process broker's are reported to the error hooks
// with ErrShutdown, as are Analyze calls cut short), deliveries stop, and
// scans get ScanGrace to return before they are walked away from (a child
// is killed). Shutdown then returns ctx's cause (joined with teardown
// errors) within about ScanGrace. A scan still running then (it ignores its
// context) tears down its worker Env when it returns; the engine's teardown
// is skipped, and the error says so. Later calls return the first call's
// result.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.shutdownOnce.Do(func() { e.shutdownErr = e.shutdown(ctx) })
	return e.shutdownErr
}

func (e *Engine) shutdown(ctx context.Context) error {
	e.gate.Lock()
	e.closed = true
	e.gate.Unlock()
	e.stopIntake()
	e.broker.Close()
	var errs []error
	drained := make(chan struct{})
	go func() {
		// Analyze calls end by themselves; the closed broker's consumers
		// return once it has nothing left for them (an in-process or local
		// broker: drained; a distributed one: their job handled).
		e.calls.Wait()
		e.consumers.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-ctx.Done():
		errs = append(errs, context.Cause(ctx))
		var queued []broker.Job
		if e.ownBroker != nil {
			// Abandon before cutting the running ones short: a job cut
			// short is handed back, and once abandoned the broker no
			// longer queues it, so it is reported once (by its own
			// worker), never also as still queued.
			queued = e.ownBroker.Abandon()
		}
		e.stopHard(ErrShutdown) // consumers take no new job; running ones are cut short
		for _, job := range queued {
			res := Result{Bounty: job.Bounty, Err: fmt.Errorf("%w: %s (still queued)", ErrShutdown, job.Bounty.ID)}
			e.finish(ctx, &res)
		}
		<-drained // bounties cut short end at most ScanGrace later
	}
	e.stopHard(ErrShutdown)

	// Every worker is idle now. Teardown gets its own context: the
	// caller's may be over, yet resources (daemons, servers) must still be
	// released.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	errs = append(errs, e.runner.stop(tctx)...)
	e.envs.release.Wait()
	if n := e.abandoned.Load(); n > 0 {
		errs = append(errs, fmt.Errorf("psengine: %d scans that ignore their context are still running: each tears down its worker Env when it returns; the engine is not torn down", n))
	} else if t, ok := e.orig.(EngineTeardown); ok && e.env.Load() != nil {
		if err := protect(func() error { return t.TeardownEngine(tctx, e.Env()) }); err != nil {
			errs = append(errs, fmt.Errorf("engine teardown: %w", err))
		}
	}
	return errors.Join(errs...)
}
