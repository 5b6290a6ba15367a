package workerproc

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/polyswarm/psengine/internal/child"
	"github.com/polyswarm/psengine/pipeline"
)

// DefaultStartTimeout is Config.StartTimeout's default.
const DefaultStartTimeout = 2 * time.Minute

// Config configures a Pool.
type Config struct {
	Name         string   // the engine's (the children's marker)
	Args         []string // a child's arguments (nil: this process's own)
	Env          []string // added to a child's environment
	StartTimeout time.Duration
	MaxTasks     int           // scans before a child is recycled (0: never)
	MaxMemory    int64         // resident bytes past which a child is recycled, or killed during a scan (0: none)
	Grace        time.Duration // how long a scan whose ctx ended may take to return before its child is killed
	Sandbox      SandboxConfig
	Logger       *slog.Logger
	// Restarted, when set, is told each child replaced, with the reason:
	// died, killed or recycled.
	Restarted func(reason string)
	// Stopping, when set, says that the engine is shutting down: a child
	// that ends is then not replaced in advance.
	Stopping func() bool
}

// Pool supervises the children of a set of worker slots. The slot of a
// scan is its worker's: only the goroutine holding a worker uses its Slot.
type Pool struct {
	cfg     Config
	wg      sync.WaitGroup // replacements starting, children retiring
	sandbox sandboxState
}

// Slot is one worker's child, or the replacement being started.
type Slot struct {
	ID    int
	child *proc
	next  chan started
}

type started struct {
	p   *proc
	err error
}

// proc is a running child. Only the goroutine holding its slot uses it,
// and reads its messages itself: no goroutine of ours stands between the
// child's reply and the scan waiting for it.
type proc struct {
	p       *child.Process
	gen     *Generation   // what it was set up with
	sandbox *sandboxChild // nil: not sandboxed
	tasks   int
	lastID  uint64
}

// NewPool returns a pool of children configured by cfg.
func NewPool(cfg Config) *Pool {
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	return &Pool{cfg: cfg}
}

// start starts a child for s set up with gen and waits until it is (or
// ctx ends: the child is then killed).
func (p *Pool) start(ctx context.Context, s *Slot, gen *Generation) (*proc, error) {
	timeout := p.cfg.StartTimeout
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("did not set up within %v", timeout))
	defer cancel()
	cfg := child.Config{Name: p.cfg.Name, Args: p.cfg.Args, Env: p.cfg.Env, Output: p.output}
	sb, err := p.prepareSandbox(gen)
	if err != nil {
		return nil, fmt.Errorf("worker %d: %w", s.ID, err)
	}
	var sh *sandboxHello
	if sb != nil {
		cfg.Env, cfg.Environ, cfg.Credential, sh = nil, sb.environ, sb.cred, sb.hello
		cfg.Cleanup = sb.cleanup
	}
	cp, err := child.Start(cfg)
	if err != nil {
		if sb != nil {
			sb.cleanup()
		}
		return nil, err
	}
	if err := sb.started(cp.Pid()); err != nil {
		cp.Kill()
		_ = cp.Wait()
		return nil, fmt.Errorf("worker %d: %w", s.ID, err)
	}
	pr := &proc{p: cp, gen: gen, sandbox: sb}
	defer context.AfterFunc(ctx, cp.Kill)()
	var m fromChild
	err = cp.Send(toChild{Hello: &hello{Env: gen.Env, Sandbox: sh}})
	if err == nil {
		err = cp.Recv(&m)
	}
	switch {
	case err == nil && m.Ready == nil:
		err = errors.New("its first message is not Ready")
	case err == nil && m.Ready.Err != "":
		_ = cp.CloseInput()
		_ = cp.Wait()
		return nil, fmt.Errorf("worker %d: child %d: %s", s.ID, cp.Pid(), m.Ready.Err)
	case err == nil:
		p.cfg.Logger.DebugContext(ctx, "worker child ready", "worker", s.ID, "child_pid", cp.Pid())
		p.logSandbox(sb, m.Ready.Sandbox)
		return pr, nil
	}
	if ctx.Err() != nil {
		err = context.Cause(ctx)
	} else {
		err = pr.ended(err)
	}
	cp.Kill()
	_ = cp.Wait()
	return nil, fmt.Errorf("worker %d: child %d did not start: %w", s.ID, cp.Pid(), err)
}

// ended says how pr's child ended, after a Send or Recv failed with err:
// its exit status or signal, or the bad message.
func (pr *proc) ended(err error) error {
	if !child.IsGone(err) { // a message we cannot read: no more trust
		pr.p.Kill()
		_ = pr.p.Wait()
		return fmt.Errorf("child %d: bad message: %w", pr.p.Pid(), err)
	}
	if werr := pr.p.Wait(); werr != nil {
		return werr
	}
	return fmt.Errorf("child %d exited", pr.p.Pid())
}

// output logs a line a child wrote: its log records (JSON, see Serve) at
// their own level with their attributes, anything else as it is; each with
// the child's pid.
func (p *Pool) output(pid int, line string) {
	log := p.cfg.Logger
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

// childFor returns s's child, starting one set up with gen when it has
// none.
func (p *Pool) childFor(ctx context.Context, s *Slot, gen *Generation) (*proc, error) {
	if s.next != nil { // a replacement is starting
		r := <-s.next
		s.next = nil
		s.child = r.p
		if r.err != nil {
			p.cfg.Logger.WarnContext(ctx, "a replacement worker child failed to start; trying again", "worker", s.ID, "err", r.err)
		}
	}
	if s.child == nil {
		pr, err := p.start(ctx, s, gen)
		if err != nil {
			return nil, err
		}
		s.child = pr
	}
	return s.child, nil
}

// replace forgets s's child, which has ended or is being retired, and
// starts its replacement in the background, set up with gen, so that it is
// ready (or nearly) when s's next scan comes.
func (p *Pool) replace(s *Slot, gen *Generation, reason string) {
	if p.cfg.Restarted != nil {
		p.cfg.Restarted(reason)
	}
	s.child = nil
	if p.cfg.Stopping != nil && p.cfg.Stopping() {
		return // shutting down: the next use, if any, starts one
	}
	next := make(chan started, 1)
	s.next = next
	p.wg.Go(func() {
		pr, err := p.start(context.Background(), s, gen)
		next <- started{pr, err}
	})
}

// retire ends pr gracefully (its teardown runs) in the background,
// killing it if it does not exit in time.
func (p *Pool) retire(pr *proc, why string) {
	p.cfg.Logger.Debug("retiring worker child", "child_pid", pr.p.Pid(), "why", why)
	_ = pr.p.CloseInput()
	p.wg.Go(func() {
		t := time.NewTimer(30 * time.Second)
		defer t.Stop()
		select {
		case <-pr.p.Exited():
		case <-t.C:
			pr.p.Kill()
		}
		_ = pr.p.Wait()
	})
}

// Scan runs the scan of a in s's child, set up with gen (a child set up
// with an older Generation is replaced first). It returns the child's
// result; when the child dies, an error wrapping ErrDied; when ctx ends,
// the child is asked to cancel the scan and gets Config.Grace to return,
// after which its process group is killed and the error wraps
// pipeline.ErrAbandoned. A dead or killed child is replaced. An error
// starting a child is returned as it is.
func (p *Pool) Scan(ctx context.Context, s *Slot, gen *Generation, a Artifact) (Result, error) {
	pr, err := p.childFor(ctx, s, gen)
	if err != nil {
		return Result{}, err
	}
	select {
	case <-pr.p.Exited(): // died while idle
		p.replace(s, gen, "died")
		if pr, err = p.childFor(ctx, s, gen); err != nil {
			return Result{}, err
		}
	default:
	}
	if pr.gen != gen { // an update replaced its Env
		p.retire(pr, "an update replaced its Env")
		s.child = nil
		if pr, err = p.childFor(ctx, s, gen); err != nil {
			return Result{}, err
		}
	}
	unstage, err := pr.stageArtifact(&a)
	if err != nil {
		return Result{}, err
	}
	defer unstage()
	pr.lastID++
	id := pr.lastID
	deadline, _ := ctx.Deadline()

	// Why the child was killed, if it was: set before the kill.
	var killed atomic.Pointer[error]
	kill := func(why error) {
		if killed.CompareAndSwap(nil, &why) {
			pr.p.Kill()
		}
	}
	var grace *time.Timer
	var mu sync.Mutex
	defer context.AfterFunc(ctx, func() {
		_ = pr.p.SendControl(toChild{Cancel: id})
		mu.Lock()
		defer mu.Unlock()
		grace = time.AfterFunc(p.cfg.Grace, func() {
			kill(fmt.Errorf("%w: the scan did not return %v after its context ended (%w); its child process was killed",
				pipeline.ErrAbandoned, p.cfg.Grace, context.Cause(ctx)))
		})
	})()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		if grace != nil {
			grace.Stop()
		}
	}()
	if max := p.cfg.MaxMemory; max > 0 {
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
				if rss, err := pr.p.RSS(); err == nil && rss > max {
					kill(fmt.Errorf("%w: %w: child %d used %d bytes, over the %d allowed; killed", ErrDied, ErrMemoryLimit, pr.p.Pid(), rss, max))
					return
				}
			}
		}()
	}

	var m fromChild
	err = pr.p.Send(toChild{Scan: &scanRequest{ID: id, Artifact: a, Deadline: deadline}})
	for err == nil && (m.Result == nil || m.Result.ID != id) {
		m = fromChild{}
		err = pr.p.Recv(&m)
	}
	if err != nil {
		ended := pr.ended(err)
		if why := killed.Load(); why != nil {
			p.replace(s, gen, "killed")
			return Result{}, *why
		}
		p.replace(s, gen, "died")
		return Result{}, fmt.Errorf("%w during the scan: %w", ErrDied, ended)
	}
	pr.tasks++
	p.afterScan(s, pr, gen)
	return m.Result.Result, nil
}

// afterScan retires pr after a scan when it has done its share of tasks or
// uses too much memory.
func (p *Pool) afterScan(s *Slot, pr *proc, gen *Generation) {
	why := ""
	if p.cfg.MaxTasks > 0 && pr.tasks >= p.cfg.MaxTasks {
		why = fmt.Sprintf("%d tasks done", pr.tasks)
	} else if p.cfg.MaxMemory > 0 {
		if rss, err := pr.p.RSS(); err == nil && rss > p.cfg.MaxMemory {
			why = fmt.Sprintf("memory %d bytes over %d", rss, p.cfg.MaxMemory)
		}
	}
	if why != "" {
		p.retire(pr, why)
		p.replace(s, gen, "recycled")
	}
}

// Stop retires every slot's child and waits for them (killing those that
// do not exit by ctx's end).
func (p *Pool) Stop(ctx context.Context, slots []*Slot) {
	var retiring []*proc
	for _, s := range slots {
		if s.next != nil {
			r := <-s.next
			s.next, s.child = nil, r.p
		}
		if s.child != nil {
			p.retire(s.child, "shutdown")
			retiring = append(retiring, s.child)
			s.child = nil
		}
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		for _, pr := range retiring {
			pr.p.Kill() // a no-op for a child already reaped
		}
		<-done
	}
}

// StartAll starts one child per slot, set up with gen, and waits until all
// are; if one fails, those started are retired and the errors returned.
func (p *Pool) StartAll(ctx context.Context, slots []*Slot, gen *Generation) error {
	errs := make([]error, len(slots))
	var wg sync.WaitGroup
	for i, s := range slots {
		wg.Go(func() { s.child, errs[i] = p.start(ctx, s, gen) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, s := range slots {
			if s.child != nil {
				p.retire(s.child, "another child failed to start")
				s.child = nil
			}
		}
		p.wg.Wait()
		return err
	}
	return nil
}
