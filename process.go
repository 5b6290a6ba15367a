package psengine

import (
	"bytes"
	"context"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/polyswarm/psengine/fetch"
	"github.com/polyswarm/psengine/internal/child"
	"github.com/polyswarm/psengine/internal/envwire"
	"github.com/polyswarm/psengine/internal/workerproc"
	"github.com/polyswarm/psengine/pipeline"
)

// ErrWorkerDied: the child process scanning the bounty died (a panic in a
// goroutine the scanner started, an exit, a signal, the memory limit, an
// OOM kill). The bounty is answered unknown and a new child takes its
// place.
var ErrWorkerDied = workerproc.ErrDied

// ErrMemoryLimit is wrapped, with ErrWorkerDied, when a child was killed
// because its memory passed ProcessConfig.MaxChildMemory during a scan.
var ErrMemoryLimit = workerproc.ErrMemoryLimit

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
const DefaultChildStartTimeout = workerproc.DefaultStartTimeout

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
// key. An artifact of 64 KiB or less (1 MiB or less for a sandboxed
// child), and content held only in memory, cross in the scan request itself
// (the child's Artifact.Path is then a temp file of its own); a larger
// local file, or the temp file larger content spilled to, crosses by path
// (to a sandboxed child as a link staged in its directory).
//
// A child is recognised at start by an environment marker naming the
// engine (WithName): New, called in the child with that name, serves the
// parent instead of returning, and exits when the parent retires it or
// dies (New never returns in a worker child; see IsWorkerChild). So a
// host program reaches New the same way in a child (call it early: what
// runs before it runs in every child too), and a test starts children that
// run only itself (see psenginetest.ProcessWorkers). Children are
// supported on unix; elsewhere Start fails.
func WithProcessWorkers(c ProcessConfig) Option {
	if c.MaxTasksPerChild < 0 || c.MaxChildMemory < 0 {
		panic(fmt.Sprintf("psengine: WithProcessWorkers(%+v): negative limit", c))
	}
	return opt(fmt.Sprintf("WithProcessWorkers(max tasks %d, max memory %d)", c.MaxTasksPerChild, c.MaxChildMemory),
		func(cfg *config) { cfg.process = &c })
}

// IsWorkerChild reports whether this process was started as a worker child
// by an engine's process backend (see WithProcessWorkers): New serves the
// parent there, and exits, instead of returning. A host can skip what only
// the parent needs before it calls New.
func IsWorkerChild() bool {
	_, ok := child.Marked()
	return ok
}

// inChildren is the scan runner of the process backend: the worker
// children of package workerproc, one per worker.
type inChildren struct {
	e    *Engine
	pool *workerproc.Pool
}

func (r inChildren) local() bool { return false }

func (r inChildren) start(ctx context.Context, gen *generation) error {
	slots := make([]*workerproc.Slot, len(r.e.workers))
	for i, w := range r.e.workers {
		slots[i] = &w.slot
	}
	if err := r.pool.StartAll(ctx, slots, gen.child); err != nil {
		return kind(ErrSetup, fmt.Errorf("process backend: %w", err))
	}
	return nil
}

// inlineMax is the largest file sent to a child in the scan request itself
// rather than by path: below it, copying the bytes through the pipe costs
// less than the child's open and read of the file. A sandboxed child cannot
// open the engine's paths: a file above sandboxedInlineMax is linked into
// its directory and removed after the scan, which costs more than copying
// a file of up to a mebibyte (the yara corpus of the README: 1.04-1.16x
// the unsandboxed CPU time with links from 64 KiB, 0.90-1.08x from 1 MiB).
const (
	inlineMax          = 64 << 10
	sandboxedInlineMax = 1 << 20
)

// scan runs the scan of a in w's child (see workerproc.Pool.Scan).
func (r inChildren) scan(ctx context.Context, w *worker, gen *generation, a Artifact) (Analysis, error) {
	wa := workerproc.Artifact{Type: string(a.Type), URI: a.URI, SHA256: a.SHA256, Size: a.Size, MIMEType: a.MIMEType}
	if a.content == nil {
		return Analysis{}, errNoContent
	}
	limit := int64(inlineMax)
	if gen.child.Policy != nil {
		limit = sandboxedInlineMax
	}
	if path, ok := a.content.File(); ok && a.Size > limit { // a local file, or the temp file it spilled to
		wa.Path = path
	} else {
		data, err := a.content.View(a.Size)
		if err != nil {
			return Analysis{}, err
		}
		wa.Data = data
	}
	res, err := r.pool.Scan(ctx, &w.slot, gen.child, wa)
	switch {
	case errors.Is(err, ErrWorkerDied), errors.Is(err, pipeline.ErrAbandoned):
		return Analysis{}, err
	case err != nil:
		return Analysis{}, kind(ErrSetup, err)
	case res.Err != nil:
		return Analysis{}, remoteErr(res.Err)
	}
	var out Analysis
	if err := json.Unmarshal(res.Analysis, &out); err != nil {
		return Analysis{}, fmt.Errorf("the analysis from the worker child: %w", err)
	}
	return out, nil
}

func (r inChildren) stop(ctx context.Context) []error {
	slots := make([]*workerproc.Slot, len(r.e.workers))
	for i, w := range r.e.workers {
		slots[i] = &w.slot
	}
	r.pool.Stop(ctx, slots) // each child runs its own WorkerTeardown
	return nil
}

// childGeneration is how children are set up with env: its snapshot and,
// unless the sandbox is off, the policy of their sandbox.
func (e *Engine) childGeneration(env *Env) (*workerproc.Generation, error) {
	snap, err := env.snapshot()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(snap); err != nil {
		return nil, err
	}
	g := &workerproc.Generation{Env: buf.Bytes()}
	if !e.cfg.process.Sandbox.Off {
		if g.Policy, g.Allow, err = e.sandboxPolicy(env); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// toWireError is err as it crosses back from a child.
func toWireError(err error) *workerproc.Error {
	if err == nil {
		return nil
	}
	w := &workerproc.Error{Message: err.Error(), Unsupported: errors.Is(err, ErrUnsupported),
		Encrypted: errors.Is(err, ErrEncrypted), Goexit: errors.Is(err, pipeline.ErrGoexit)}
	if pe, ok := errors.AsType[*PanicError](err); ok {
		w.Panic, w.Stack, w.Message = true, pe.Stack, fmt.Sprint(pe.Value)
	}
	return w
}

// remoteErr rebuilds an error that the engine classifies as it would the
// original: the special results, panics with their stack, Goexit.
func remoteErr(w *workerproc.Error) error {
	switch {
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

// childSide is a worker child's side of the engine (workerproc.Handler).
type childSide struct {
	e    *Engine
	w    *worker
	wenv *Env // the worker's Env, once set up
}

// takeOverAsChild serves the parent when this process is a worker child of
// the engine named e.cfg.name (see WithProcessWorkers), and then exits; it
// returns at once otherwise. Its logs go to stderr as JSON records, which
// the parent logs with the child's pid.
func (e *Engine) takeOverAsChild() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lowestLevel(e.cfg.logger)}))
	if code, ok := workerproc.Serve(e.cfg.name, &childSide{e: e, w: &worker{id: os.Getpid()}}, log, ErrTimeout); ok {
		os.Exit(code)
	}
}

func (c *childSide) Setup(data []byte, temp string) error {
	var snap envwire.Snapshot
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&snap); err != nil {
		return fmt.Errorf("the engine's Env: %w", err)
	}
	env, err := envFromSnapshot(snap)
	if err != nil {
		return fmt.Errorf("the engine's Env: %w", err)
	}
	c.e.cfg.logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lowestLevel(c.e.cfg.logger)}))
	env.logger = c.e.cfg.logger
	if temp != "" {
		env.dirs.Temp = temp
	}
	c.e.env.Store(&env)
	c.wenv, err = c.e.workerEnv(context.Background(), c.w, &env)
	return err
}

func (c *childSide) Scan(ctx context.Context, wa workerproc.Artifact) workerproc.Result {
	var content *fetch.Content
	if wa.Path != "" {
		var err error
		if content, err = fetch.FromFile(wa.Path, wa.Size, wa.SHA256); err != nil {
			return workerproc.Result{Err: toWireError(err)}
		}
	} else {
		content = fetch.FromBytes(wa.Data)
	}
	a := Artifact{Type: ArtifactType(wa.Type), URI: wa.URI, SHA256: wa.SHA256, Size: wa.Size, MIMEType: wa.MIMEType, content: content}
	defer a.Close()
	// A panic becomes an error; a scan that ignores its ctx is the
	// parent's to end, by killing this process.
	var out Analysis
	err := protect(func() (err error) { out, err = c.e.scanner.Scan(ctx, *c.wenv, a); return err })
	if err != nil {
		return workerproc.Result{Err: toWireError(err)}
	}
	data, err := json.Marshal(out)
	if err != nil {
		return workerproc.Result{Err: toWireError(err)}
	}
	return workerproc.Result{Analysis: data}
}

func (c *childSide) Teardown() {
	if c.wenv == nil {
		return
	}
	if err := c.e.teardownAlone(*c.wenv); err != nil {
		c.e.cfg.logger.Error("worker teardown", "err", err)
	}
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
