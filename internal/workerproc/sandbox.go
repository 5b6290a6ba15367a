package workerproc

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/polyswarm/psengine/internal/child"
	"github.com/polyswarm/psengine/internal/sandbox"
)

// SandboxConfig is how sandboxed children (a Generation with a Policy) are
// started.
type SandboxConfig struct {
	// User runs the children as this user (a name or a uid), with its
	// primary group; the engine must run as root.
	User string
	// Procs bounds the tasks of a child and what it starts (a pids cgroup;
	// 0: sandbox.DefaultProcs).
	Procs uint64
}

// sandboxState is what the pool resolved once for its sandboxed children.
type sandboxState struct {
	once   sync.Once
	uid    int // -1: the parent's
	gid    int
	cred   *child.Credential
	err    error
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
	procs   uint64
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

// prepareSandbox makes the sandbox of a child to start with gen: its
// private directory, environment and policy. nil when gen has no policy.
func (p *Pool) prepareSandbox(gen *Generation) (*sandboxChild, error) {
	if gen.Policy == nil {
		return nil, nil
	}
	s := &p.sandbox
	s.once.Do(func() { s.uid, s.gid, s.cred, s.err = sandboxUser(p.cfg.Sandbox.User) })
	if s.err != nil {
		return nil, s.err
	}
	policy := clonePolicy(*gen.Policy)
	// The child's temp directory goes where its TMPDIR would have been.
	env := append(os.Environ(), p.cfg.Env...)
	parent := lastValue(env, "TMPDIR")
	prefix := cmp.Or(lastValue(env, "TMPPREFIX"), p.cfg.Name+"-")
	dir, err := sandbox.NewDir(parent, prefix, s.uid, s.gid)
	if err != nil {
		return nil, err
	}
	policy.Read = append(policy.Read, dir.In)
	policy.Write = append(policy.Write, dir.Temp)
	sc := &sandboxChild{
		dir:     dir,
		hello:   &sandboxHello{Policy: policy, Temp: dir.Temp},
		environ: sandbox.Environ(os.Environ(), gen.Allow, append(slices.Clone(p.cfg.Env), "TMPDIR="+dir.Temp)),
		cred:    s.cred,
		procs:   cmp.Or(p.cfg.Sandbox.Procs, sandbox.DefaultProcs),
	}
	sc.pids, sc.pidsErr = sandbox.NewPidsGroup(sc.procs)
	return sc, nil
}

func clonePolicy(p sandbox.Policy) sandbox.Policy {
	p.Read, p.Write = slices.Clone(p.Read), slices.Clone(p.Write)
	p.Unix, p.TCP = slices.Clone(p.Unix), slices.Clone(p.TCP)
	return p
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
func (p *Pool) logSandbox(sc *sandboxChild, r *sandbox.Report) {
	if sc == nil || r == nil || p.sandbox.logged.Swap(true) {
		return
	}
	names := []string{}
	for _, kv := range sc.environ {
		name, _, _ := strings.Cut(kv, "=")
		names = append(names, name)
	}
	attrs := append([]any{"environment", strings.Join(names, " ")}, r.Attrs()...)
	if sc.pids != nil {
		attrs = append(attrs, "pids_cgroup", fmt.Sprintf("at most %d tasks per child (%s)", sc.procs, filepath.Dir(sc.pids.Dir)))
	} else {
		attrs = append(attrs, "pids_cgroup", fmt.Sprintf("unavailable (%v)", sc.pidsErr))
	}
	p.cfg.Logger.Info("worker children are sandboxed", attrs...)
}

// errStaging is returned for a scan whose artifact could not be staged for
// a sandboxed child.
var errStaging = errors.New("psengine: staging the artifact for the sandboxed child")

// stageArtifact makes a's file readable by pr's sandboxed child; the
// returned function undoes it.
func (pr *proc) stageArtifact(a *Artifact) (func(), error) {
	if pr.sandbox == nil || a.Path == "" {
		return func() {}, nil
	}
	staged, release, err := pr.sandbox.dir.Stage(filepath.Clean(a.Path))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errStaging, err)
	}
	a.Path = staged
	return release, nil
}
