package psengine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/polyswarm/psengine/child"
	"github.com/polyswarm/psengine/internal/sandbox"
	"github.com/polyswarm/psengine/pipeline"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// ErrWorkerDied: the child process scanning the bounty died (a panic in a
// goroutine the scanner started, an exit, a signal, the memory limit, an
// OOM kill). The bounty is answered unknown and a new child takes its
// place.
var ErrWorkerDied = errors.New("psengine: worker process died")

// ErrMemoryLimit is wrapped, with ErrWorkerDied, when a child was killed
// because its memory passed ProcessConfig.MaxChildMemory during a scan.
var ErrMemoryLimit = errors.New("psengine: worker process memory limit")

// ProcessConfig configures the process backend (see WithProcessWorkers).
// The zero value is usable.
type ProcessConfig struct {
	// MaxTasksPerChild retires a child once it has scanned that many
	// artifacts and starts a new one in its place (0: never), like
	// Celery's --max-tasks-per-child.
	MaxTasksPerChild int
	// MaxChildMemory bounds a child's resident memory, in bytes (0: no
	// bound; read on Linux only). A child over it after a scan is retired;
	// one that passes it during a scan is killed at once, and that bounty
	// answered unknown (ErrMemoryLimit).
	MaxChildMemory int64
	// Args are the arguments a child starts with; nil means this process's
	// own (os.Args[1:]): the child starts the way the parent did, until it
	// calls New (or cli.Program.Main) and recognises the marker.
	Args []string
	// Env is added to a child's environment (KEY=VALUE), besides the
	// parent's (with the sandbox: besides the variables it lets through).
	Env []string
	// StartTimeout bounds how long a child may take to start and set up
	// (WorkerSetup); one that takes longer is killed, and Start, or the
	// bounty that waited for it, fails (default 2 minutes).
	StartTimeout time.Duration
	// Sandbox confines the children; the zero value is on (see
	// SandboxConfig).
	Sandbox SandboxConfig
}

// DefaultChildStartTimeout is ProcessConfig.StartTimeout's default.
const DefaultChildStartTimeout = 2 * time.Minute

// WithProcessWorkers runs every scan in a child process: this program,
// re-executed, one child per worker (WithWorkers), each running
// WorkerSetup once, then scans, then WorkerTeardown when it is retired.
// The parent keeps everything else: intake, fetch, identification, bid,
// validation, delivery and hooks. A child that dies, whatever the way
// (a panic in a goroutine the scanner started, os.Exit, a signal, an OOM
// kill), costs only the bounty it held: answered unknown with
// ErrWorkerDied, and a new child takes its place. A scan that ignores its
// ctx has its child's whole process group killed ScanGrace after its
// deadline (ErrTimeout), and the child is replaced.
//
// The Env that EngineSetup built reaches every child, read-only: its
// values must be able to cross (see NewKey), else Start fails naming the
// key. A local file goes to a child by path; other content as bytes, or
// as the temp file it spilled to.
//
// A child is recognised at start by an environment marker naming the
// engine (WithName): New, called in the child with that name, serves the
// parent instead of returning, and exits when the parent retires it or
// dies. So a host program reaches New the same way in a child (call it
// early: what runs before it runs in every child too), and a test starts
// children that run only itself (see psenginetest.ProcessWorkers).
// Children are supported on unix; elsewhere Start fails.
func WithProcessWorkers(c ProcessConfig) Option {
	if c.MaxTasksPerChild < 0 || c.MaxChildMemory < 0 {
		panic(fmt.Sprintf("psengine: WithProcessWorkers(%+v): negative limit", c))
	}
	return opt(fmt.Sprintf("WithProcessWorkers(max tasks %d, max memory %d)", c.MaxTasksPerChild, c.MaxChildMemory),
		func(cfg *config) { cfg.process = &c })
}

// Messages between a parent and its children.
type (
	toChild struct {
		Hello  *childHello
		Scan   *scanRequest
		Cancel uint64 // the ID of a scan whose ctx ended
	}
	childHello struct {
		Env     envSnapshot
		Sandbox *sandboxHello // nil: no sandbox
	}
	scanRequest struct {
		ID       uint64
		Artifact wireArtifact
		Deadline time.Time // zero: none
	}
	fromChild struct {
		Ready  *childReady
		Result *scanResult
	}
	childReady struct {
		Err     string          // WorkerSetup's error, if it failed
		Sandbox *sandbox.Report // what the sandbox put in force
	}
	scanResult struct {
		ID       uint64
		Analysis []byte // its own JSON (see Analysis.MarshalJSON)
		Err      *wireError
	}
)

// wireArtifact is an Artifact on its way to a child: by the path of a real
// file holding it, or as bytes.
type wireArtifact struct {
	Type     ArtifactType
	URI      string
	SHA256   string
	Size     int64
	MIMEType string
	Path     string
	Data     []byte
}

// wireError is a scan's error on its way back: its message, and what the
// engine needs to know of it.
type wireError struct {
	Message     string
	Unsupported bool
	Encrypted   bool
	Panic       bool
	Stack       []byte
	Goexit      bool
}

func toWireError(err error) *wireError {
	if err == nil {
		return nil
	}
	w := &wireError{Message: err.Error(), Unsupported: errors.Is(err, ErrUnsupported),
		Encrypted: errors.Is(err, ErrEncrypted), Goexit: errors.Is(err, pipeline.ErrGoexit)}
	if pe, ok := errors.AsType[*PanicError](err); ok {
		w.Panic, w.Stack, w.Message = true, pe.Stack, fmt.Sprint(pe.Value)
	}
	return w
}

// err rebuilds an error that the engine classifies as it would the
// original: the special results, panics with their stack, Goexit.
func (w *wireError) err() error {
	switch {
	case w == nil:
		return nil
	case w.Panic:
		return &PanicError{Value: w.Message, Stack: w.Stack}
	case w.Goexit:
		return pipeline.ErrGoexit
	case w.Unsupported:
		return remoteError{msg: w.Message, kind: ErrUnsupported}
	case w.Encrypted:
		return remoteError{msg: w.Message, kind: ErrEncrypted}
	}
	return remoteError{msg: w.Message}
}

// remoteError is a scanner's error from a child, with its message as it was.
type remoteError struct {
	msg  string
	kind error
}

func (e remoteError) Error() string { return e.msg }
func (e remoteError) Unwrap() error { return e.kind }

// childWorker is a worker's child process. Only the goroutine holding its
// worker uses it, and reads its messages itself: no goroutine of ours
// stands between the child's reply and the bounty waiting for it.
type childWorker struct {
	p       *child.Process
	gen     *generation   // the Env it was given
	sandbox *sandboxChild // nil: not sandboxed
	tasks   int
	lastID  uint64
}

// children is the process backend's side of the Engine.
type children struct {
	cfg     ProcessConfig
	wg      sync.WaitGroup // replacements starting, children retiring
	sandbox sandboxState
}

// startChild starts a child for w and waits until it is set up (or ctx
// ends: the child is then killed).
func (e *Engine) startChild(ctx context.Context, w *worker) (*childWorker, error) {
	pc := e.procs.cfg
	timeout := pc.StartTimeout
	if timeout <= 0 {
		timeout = DefaultChildStartTimeout
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("did not set up within %v", timeout))
	defer cancel()
	e.envs.mu.Lock()
	gen := e.envs.current
	e.envs.mu.Unlock()
	cfg := child.Config{Name: e.cfg.name, Args: pc.Args, Env: pc.Env, Output: e.childOutput}
	sb, err := e.prepareSandbox(gen)
	if err != nil {
		return nil, fmt.Errorf("worker %d: %w", w.id, err)
	}
	var hello *sandboxHello
	if sb != nil {
		cfg.Env, cfg.Environ, cfg.Credential, hello = nil, sb.environ, sb.cred, sb.hello
		cfg.Cleanup = sb.cleanup
	}
	p, err := child.Start(cfg)
	if err != nil {
		if sb != nil {
			sb.cleanup()
		}
		return nil, err
	}
	if err := sb.started(p.Pid()); err != nil {
		p.Kill()
		_ = p.Wait()
		return nil, fmt.Errorf("worker %d: %w", w.id, err)
	}
	cw := &childWorker{p: p, gen: gen, sandbox: sb}
	defer context.AfterFunc(ctx, p.Kill)()
	var m fromChild
	err = p.Send(toChild{Hello: &childHello{Env: gen.snapshot, Sandbox: hello}})
	if err == nil {
		err = p.Recv(&m)
	}
	switch {
	case err == nil && m.Ready == nil:
		err = errors.New("its first message is not Ready")
	case err == nil && m.Ready.Err != "":
		_ = p.CloseInput()
		_ = p.Wait()
		return nil, fmt.Errorf("worker %d: child %d: %s", w.id, p.Pid(), m.Ready.Err)
	case err == nil:
		e.cfg.logger.Debug("worker child ready", "worker", w.id, "child_pid", p.Pid())
		e.logSandbox(sb, m.Ready.Sandbox)
		return cw, nil
	}
	if ctx.Err() != nil {
		err = context.Cause(ctx)
	} else {
		err = cw.ended(err)
	}
	p.Kill()
	_ = p.Wait()
	return nil, fmt.Errorf("worker %d: child %d did not start: %w", w.id, p.Pid(), err)
}

// ended says how cw's child ended, after a Send or Recv failed with err:
// its exit status or signal, or the bad message.
func (cw *childWorker) ended(err error) error {
	if !child.IsGone(err) { // a message we cannot read: no more trust
		cw.p.Kill()
		_ = cw.p.Wait()
		return fmt.Errorf("child %d: bad message: %w", cw.p.Pid(), err)
	}
	if werr := cw.p.Wait(); werr != nil {
		return werr
	}
	return fmt.Errorf("child %d exited", cw.p.Pid())
}

// childOutput logs a line a child wrote: its log records (JSON, see
// serveChild) at their own level with their attributes, anything else as
// it is; each with the child's pid.
func (e *Engine) childOutput(pid int, line string) {
	log := e.cfg.logger
	var rec map[string]any
	if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &rec) == nil {
		var level slog.Level
		if s, ok := rec[slog.LevelKey].(string); ok {
			_ = level.UnmarshalText([]byte(s))
		}
		msg, _ := rec[slog.MessageKey].(string)
		attrs := []any{"child_pid", pid}
		for k, v := range rec {
			if k != slog.LevelKey && k != slog.MessageKey && k != slog.TimeKey {
				attrs = append(attrs, k, v)
			}
		}
		log.Log(context.Background(), level, msg, attrs...)
		return
	}
	log.Warn("worker child output", "child_pid", pid, "line", line)
}

// childFor returns w's child, starting one when it has none.
func (e *Engine) childFor(ctx context.Context, w *worker) (*childWorker, error) {
	if w.next != nil { // a replacement is starting
		r := <-w.next
		w.next = nil
		w.child = r.cw
		if r.err != nil {
			e.cfg.logger.WarnContext(ctx, "a replacement worker child failed to start; trying again", "worker", w.id, "err", r.err)
		}
	}
	if w.child == nil {
		cw, err := e.startChild(ctx, w)
		if err != nil {
			return nil, kind(ErrSetup, err)
		}
		w.child = cw
	}
	return w.child, nil
}

type started struct {
	cw  *childWorker
	err error
}

// replaceChild forgets w's child, which has ended or is being retired, and
// starts its replacement in the background, so that it is ready (or
// nearly) when w's next bounty comes.
func (e *Engine) replaceChild(w *worker, reason string) {
	e.tel.childRestarts.Add(context.Background(), 1, metric.WithAttributes(attribute.String("reason", reason)))
	w.child = nil
	if e.hard.Err() != nil || e.intake.Err() != nil && e.ownBroker == nil {
		return // shutting down: the next use, if any, starts one
	}
	next := make(chan started, 1)
	w.next = next
	e.procs.wg.Go(func() {
		cw, err := e.startChild(e.hard, w)
		next <- started{cw, err}
	})
}

// retireChild ends cw gracefully (its WorkerTeardown runs) in the
// background, killing it if it does not exit in time.
func (e *Engine) retireChild(cw *childWorker, why string) {
	e.cfg.logger.Debug("retiring worker child", "child_pid", cw.p.Pid(), "why", why)
	_ = cw.p.CloseInput()
	e.procs.wg.Go(func() {
		t := time.NewTimer(30 * time.Second)
		defer t.Stop()
		select {
		case <-cw.p.Exited():
		case <-t.C:
			cw.p.Kill()
		}
		_ = cw.p.Wait()
	})
}

// scanInChild runs the scan of a in w's child. It returns the child's
// result; when the child dies, an error wrapping ErrWorkerDied; when ctx
// ends, the child is asked to cancel the scan and gets ScanGrace to return,
// after which its process group is killed and the error wraps
// pipeline.ErrAbandoned. A dead or killed child is replaced.
func (e *Engine) scanInChild(ctx context.Context, w *worker, a Artifact) (Analysis, error) {
	cw, err := e.childFor(ctx, w)
	if err != nil {
		return Analysis{}, err
	}
	select {
	case <-cw.p.Exited(): // died while idle
		e.replaceChild(w, "died")
		if cw, err = e.childFor(ctx, w); err != nil {
			return Analysis{}, err
		}
	default:
	}
	if !e.envs.currentIs(cw.gen) { // an update replaced its Env
		e.retireChild(cw, "an update replaced its Env")
		w.child = nil
		if cw, err = e.childFor(ctx, w); err != nil {
			return Analysis{}, err
		}
	}
	req, err := wireArtifactOf(a)
	if err != nil {
		return Analysis{}, err
	}
	unstage, err := cw.stageArtifact(&req)
	if err != nil {
		return Analysis{}, err
	}
	defer unstage()
	cw.lastID++
	id := cw.lastID
	deadline, _ := ctx.Deadline()

	// Why the child was killed, if it was: set before the kill.
	var killed atomic.Pointer[error]
	kill := func(why error) {
		if killed.CompareAndSwap(nil, &why) {
			cw.p.Kill()
		}
	}
	var grace *time.Timer
	var mu sync.Mutex
	defer context.AfterFunc(ctx, func() {
		_ = cw.p.SendControl(toChild{Cancel: id})
		mu.Lock()
		defer mu.Unlock()
		grace = time.AfterFunc(e.grace(), func() {
			kill(fmt.Errorf("%w: the scan did not return %v after its context ended (%w); its child process was killed",
				pipeline.ErrAbandoned, e.grace(), context.Cause(ctx)))
		})
	})()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		if grace != nil {
			grace.Stop()
		}
	}()
	if max := e.procs.cfg.MaxChildMemory; max > 0 {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				if rss, err := cw.p.RSS(); err == nil && rss > max {
					kill(fmt.Errorf("%w: %w: child %d used %d bytes, over the %d allowed; killed", ErrWorkerDied, ErrMemoryLimit, cw.p.Pid(), rss, max))
					return
				}
			}
		}()
	}

	var m fromChild
	err = cw.p.Send(toChild{Scan: &scanRequest{ID: id, Artifact: req, Deadline: deadline}})
	for err == nil && (m.Result == nil || m.Result.ID != id) {
		m = fromChild{}
		err = cw.p.Recv(&m)
	}
	if err != nil {
		ended := cw.ended(err)
		if why := killed.Load(); why != nil {
			e.replaceChild(w, "killed")
			return Analysis{}, *why
		}
		e.replaceChild(w, "died")
		return Analysis{}, fmt.Errorf("%w during the scan: %w", ErrWorkerDied, ended)
	}
	r := m.Result
	cw.tasks++
	e.afterChildScan(w, cw)
	if r.Err != nil {
		return Analysis{}, r.Err.err()
	}
	var out Analysis
	if err := json.Unmarshal(r.Analysis, &out); err != nil {
		return Analysis{}, fmt.Errorf("the analysis from the worker child: %w", err)
	}
	return out, nil
}

// afterChildScan retires cw after a scan when it has done its share of
// tasks or uses too much memory.
func (e *Engine) afterChildScan(w *worker, cw *childWorker) {
	pc := e.procs.cfg
	why := ""
	if pc.MaxTasksPerChild > 0 && cw.tasks >= pc.MaxTasksPerChild {
		why = fmt.Sprintf("%d tasks done", cw.tasks)
	} else if pc.MaxChildMemory > 0 {
		if rss, err := cw.p.RSS(); err == nil && rss > pc.MaxChildMemory {
			why = fmt.Sprintf("memory %d bytes over %d", rss, pc.MaxChildMemory)
		}
	}
	if why != "" {
		e.retireChild(cw, why)
		e.replaceChild(w, "recycled")
	}
}

// wireArtifactOf is how a goes to a child: by the path of the real file
// holding it (a local file, or the temp file it spilled to), else as bytes.
func wireArtifactOf(a Artifact) (wireArtifact, error) {
	w := wireArtifact{Type: a.Type, URI: a.URI, SHA256: a.SHA256, Size: a.Size, MIMEType: a.MIMEType}
	if a.content == nil {
		return w, errNoContent
	}
	if path, ok := a.content.File(); ok {
		w.Path = path
		return w, nil
	}
	data, err := a.content.View(a.Size)
	w.Data = data
	return w, err
}

// stopChildren retires every worker's child at shutdown and waits for
// them (killing those that do not exit by ctx's end).
func (e *Engine) stopChildren(ctx context.Context) {
	for _, w := range e.workers {
		if w.next != nil {
			r := <-w.next
			w.next, w.child = nil, r.cw
		}
		if w.child != nil {
			e.retireChild(w.child, "shutdown")
			w.child = nil
		}
	}
	done := make(chan struct{})
	go func() { e.procs.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		<-done // retireChild kills what does not exit within its own bound
	}
}

// startChildren starts one child per worker and waits until all are set
// up.
func (e *Engine) startChildren(ctx context.Context) error {
	errs := make([]error, len(e.workers))
	var wg sync.WaitGroup
	for i, w := range e.workers {
		wg.Go(func() { w.child, errs[i] = e.startChild(ctx, w) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, w := range e.workers {
			if w.child != nil {
				e.retireChild(w.child, "another child failed to start")
				w.child = nil
			}
		}
		e.procs.wg.Wait()
		return kind(ErrSetup, fmt.Errorf("process backend: %w", err))
	}
	return nil
}
