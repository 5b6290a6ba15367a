package psengine

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/polyswarm/psengine/child"
	"github.com/polyswarm/psengine/internal/sandbox"
)

// SandboxNeeds is what a scanner's scans need from the machine when they
// run in a sandboxed worker child (see SandboxConfig): everything else is
// refused to them. A child may always read the system's programs,
// libraries and data (/usr, /lib, /etc without its secrets, /proc, /sys),
// read the engine's data, config, cache, bin and lib directories, and
// write its own temp directory (its TMPDIR and Env.Dirs().Temp).
type SandboxNeeds struct {
	// Read lists files and directories (with everything under them) to
	// read and execute: rules, signatures, a scanner's installation.
	Read []string
	// Write lists files and directories to read and write: a Wine prefix,
	// a daemon's socket directory.
	Write []string
	// Dial lists the addresses to connect to: "unix:PATH", or
	// "tcp:HOST:PORT" (also "HOST:PORT"). The sandbox allows TCP by port:
	// the port on any host.
	Dial []string
	// Env names the variables of the engine's environment a child keeps
	// (a licence key, say), besides the basics (PATH, HOME, LANG, LC_*,
	// TZ, TMPPREFIX, the engine's PSENGINE_* directories, LOG_LEVEL,
	// LOG_FORMAT, the Go runtime's settings). The webhook's secret never
	// reaches a child.
	Env []string
}

// SandboxDeclarer is a scanner that says what its scans need (see
// SandboxNeeds). The engine asks it in the parent, with the Env that setup
// (or the last update) built, before it starts children with that Env.
// A scanner that does not declare anything gets the defaults only.
type SandboxDeclarer interface {
	SandboxNeeds(env Env) SandboxNeeds
}

// SandboxConfig confines the process backend's children (see
// ProcessConfig.Sandbox); the zero value is the default: on. A child gets
// an allow-listed environment (see SandboxNeeds.Env) and a private temp
// directory, and before its first task (WorkerSetup included) confines
// itself: no core dumps, bounded file size, open files and processes;
// no_new_privs; no capabilities; Landlock filesystem rules (read the
// system and the engine's data, write its temp directory, what the
// scanner declares) and network rules (no TCP connect or bind but the
// declared ports); seccomp denying ptrace, mount, namespaces, kexec, BPF,
// keyctl, perf_event_open and the like (EPERM). What the kernel lacks is
// skipped and logged; the engine logs what is in force when the first
// child starts.
//
// Artifacts reach a sandboxed child by a hard link (or copy) in its
// private directory: the child reads nothing else of the engine's. The
// sandbox is Linux only; elsewhere the log says that nothing is enforced.
type SandboxConfig struct {
	// Off runs children unconfined, with the parent's whole environment.
	Off bool
	// User runs the children as this user (a name or a uid), with its
	// primary group and no others; the engine must run as root. Their
	// temp directory is theirs, and artifacts reach them as copies. Files
	// a scanner needs must be readable by that user.
	User string
	// MaxProcs bounds the processes and threads of the children's user
	// (RLIMIT_NPROC; not enforced by the kernel for uid 0: use User),
	// MaxOpenFiles a child's open files and MaxFileSize the size of a file
	// it writes; 0 means the sandbox's defaults (1024, 4096, 4 GiB).
	MaxProcs, MaxOpenFiles uint64
	MaxFileSize            int64
}

// sandboxHello is what a child needs to confine itself.
type sandboxHello struct {
	Policy sandbox.Policy
	Temp   string // the child's temp directory
}

// sandboxState is the process backend's sandbox: the policy of the
// current generation's children, made once per generation.
type sandboxState struct {
	mu     sync.Mutex
	gen    *generation
	policy sandbox.Policy // without the child's own directory
	allow  []string       // environment names the scanner declared
	cred   *child.Credential
	uid    int // -1: the parent's
	gid    int
	err    error
	once   sync.Once
	logged atomic.Bool
}

// sandboxChild is the sandbox of one child about to start.
type sandboxChild struct {
	dir     *sandbox.Dir
	hello   *sandboxHello
	environ []string
	cred    *child.Credential
	pids    *sandbox.PidsGroup // nil: none could be made (pidsErr says why)
	pidsErr error
}

// started puts the child, just started, in its pids cgroup.
func (sc *sandboxChild) started(pid int) error {
	if sc == nil || sc.pids == nil {
		return nil
	}
	return sc.pids.Add(pid)
}

// cleanup removes what the child's sandbox made, once it has exited.
func (sc *sandboxChild) cleanup() {
	if sc.pids != nil {
		_ = sc.pids.Remove()
	}
	_ = sc.dir.Remove()
}

// prepareSandbox makes the sandbox of a child to start with gen's Env: its
// private directory, environment and policy. nil when the sandbox is off.
func (e *Engine) prepareSandbox(gen *generation) (*sandboxChild, error) {
	pc := e.procs.cfg
	if pc.Sandbox.Off {
		return nil, nil
	}
	s := &e.procs.sandbox
	s.once.Do(func() { s.uid, s.gid, s.cred, s.err = sandboxUser(pc.Sandbox.User) })
	if s.err != nil {
		return nil, s.err
	}
	policy, allow, err := e.sandboxPolicy(gen)
	if err != nil {
		return nil, err
	}
	// The child's temp directory goes where its TMPDIR would have been.
	env := append(os.Environ(), pc.Env...)
	parent := lastValue(env, "TMPDIR")
	prefix := lastValue(env, "TMPPREFIX")
	if prefix == "" {
		prefix = e.cfg.name + "-"
	}
	dir, err := sandbox.NewDir(parent, prefix, s.uid, s.gid)
	if err != nil {
		return nil, err
	}
	policy.Read = append(policy.Read, dir.In)
	policy.Write = append(policy.Write, dir.Temp)
	sc := &sandboxChild{
		dir:     dir,
		hello:   &sandboxHello{Policy: policy, Temp: dir.Temp},
		environ: sandbox.Environ(os.Environ(), allow, append(slices.Clone(pc.Env), "TMPDIR="+dir.Temp)),
		cred:    s.cred,
	}
	procs := pc.Sandbox.MaxProcs
	if procs == 0 {
		procs = sandbox.DefaultProcs
	}
	sc.pids, sc.pidsErr = sandbox.NewPidsGroup(procs)
	return sc, nil
}

// sandboxPolicy is the policy of gen's children (but their own
// directory), and the environment names the scanner declared.
func (e *Engine) sandboxPolicy(gen *generation) (sandbox.Policy, []string, error) {
	s := &e.procs.sandbox
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen == gen {
		return clonePolicy(s.policy), s.allow, nil
	}
	var needs SandboxNeeds
	if d, ok := e.orig.(SandboxDeclarer); ok {
		needs = d.SandboxNeeds(*gen.env)
	}
	sc := e.procs.cfg.Sandbox
	p := sandbox.Policy{
		Read:   sandbox.SystemReadPaths(),
		Write:  append(sandbox.SystemWritePaths(), needs.Write...),
		Limits: sandbox.Limits{FileSize: sc.MaxFileSize, OpenFiles: sc.MaxOpenFiles, Procs: sc.MaxProcs},
	}
	dirs := gen.env.Dirs()
	for _, d := range []string{dirs.Data, dirs.Config, dirs.Cache, dirs.Bin, dirs.Lib} {
		if d != "" {
			p.Read = append(p.Read, d)
		}
	}
	p.Read = append(p.Read, needs.Read...)
	if d := os.Getenv("GOCOVERDIR"); d != "" { // coverage of a test's children
		p.Write = append(p.Write, d)
	}
	for _, addr := range needs.Dial {
		if err := addDial(&p, addr); err != nil {
			return sandbox.Policy{}, nil, fmt.Errorf("sandbox: the scanner's SandboxNeeds: %w", err)
		}
	}
	s.gen, s.policy, s.allow = gen, p, needs.Env
	return clonePolicy(p), needs.Env, nil
}

func clonePolicy(p sandbox.Policy) sandbox.Policy {
	p.Read, p.Write = slices.Clone(p.Read), slices.Clone(p.Write)
	p.Unix, p.TCP = slices.Clone(p.Unix), slices.Clone(p.TCP)
	return p
}

// addDial allows p to connect to addr: "unix:PATH", "tcp:HOST:PORT" or
// "HOST:PORT".
func addDial(p *sandbox.Policy, addr string) error {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" {
			return fmt.Errorf("dial address %q: no path", addr)
		}
		p.Unix = append(p.Unix, path)
		return nil
	}
	_, port, err := net.SplitHostPort(strings.TrimPrefix(addr, "tcp:"))
	if err != nil {
		return fmt.Errorf("dial address %q: want unix:PATH or tcp:HOST:PORT: %w", addr, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("dial address %q: bad port %q", addr, port)
	}
	p.TCP = append(p.TCP, uint16(n))
	return nil
}

// sandboxUser resolves SandboxConfig.User: -1 and no credential when
// empty.
func sandboxUser(name string) (uid, gid int, cred *child.Credential, err error) {
	if name == "" {
		return -1, -1, nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		var uerr error
		if u, uerr = user.LookupId(name); uerr != nil {
			return 0, 0, nil, fmt.Errorf("sandbox user %q: %w", name, err)
		}
	}
	uid, err = strconv.Atoi(u.Uid)
	if err == nil {
		gid, err = strconv.Atoi(u.Gid)
	}
	if err != nil {
		return 0, 0, nil, fmt.Errorf("sandbox user %q: %w", name, err)
	}
	if os.Geteuid() != 0 {
		return 0, 0, nil, fmt.Errorf("sandbox user %q: the engine must run as root to start children as another user", name)
	}
	if uid == 0 {
		return 0, 0, nil, fmt.Errorf("sandbox user %q: is root", name)
	}
	return uid, gid, &child.Credential{UID: uint32(uid), GID: uint32(gid)}, nil
}

// lastValue is the value of the last name=... in env.
func lastValue(env []string, name string) string {
	for _, kv := range slices.Backward(env) {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// logSandbox logs, once, what a child reported in force.
func (e *Engine) logSandbox(sc *sandboxChild, r *sandbox.Report) {
	s := &e.procs.sandbox
	if sc == nil || r == nil || s.logged.Swap(true) {
		return
	}
	names := []string{}
	for _, kv := range sc.environ {
		name, _, _ := strings.Cut(kv, "=")
		names = append(names, name)
	}
	attrs := append([]any{"environment", strings.Join(names, " ")}, r.Attrs()...)
	if sc.pids != nil {
		attrs = append(attrs, "pids_cgroup", fmt.Sprintf("at most %d tasks per child (%s)", e.procsLimit(), filepath.Dir(sc.pids.Dir)))
	} else {
		attrs = append(attrs, "pids_cgroup", fmt.Sprintf("unavailable (%v)", sc.pidsErr))
	}
	e.cfg.logger.Info("worker children are sandboxed", attrs...)
}

// procsLimit is the children's task limit.
func (e *Engine) procsLimit() uint64 {
	if n := e.procs.cfg.Sandbox.MaxProcs; n > 0 {
		return n
	}
	return sandbox.DefaultProcs
}

// enterSandbox confines this worker child as the parent said (see
// sandbox.Apply), and makes its temp directory the Env's.
func enterSandbox(h *sandboxHello, env *Env) (*sandbox.Report, error) {
	if h == nil {
		return nil, nil
	}
	r, err := sandbox.Apply(h.Policy)
	if err != nil {
		return nil, err
	}
	env.dirs.Temp = h.Temp
	return &r, nil
}

// errSandboxPath is returned for a scan whose artifact could not be
// staged for a sandboxed child.
var errSandboxPath = errors.New("psengine: staging the artifact for the sandboxed child")

// stageArtifact makes req's file readable by cw's sandboxed child; the
// returned function undoes it.
func (cw *childWorker) stageArtifact(req *wireArtifact) (func(), error) {
	if cw.sandbox == nil || req.Path == "" {
		return func() {}, nil
	}
	staged, release, err := cw.sandbox.dir.Stage(filepath.Clean(req.Path))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errSandboxPath, err)
	}
	req.Path = staged
	return release, nil
}
