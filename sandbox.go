package psengine

import (
	"fmt"
	"os"

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

// sandboxPolicy is the policy of the children set up with env (but their
// own directory), and the environment names the scanner declared.
func (e *Engine) sandboxPolicy(env *Env) (*sandbox.Policy, []string, error) {
	var needs SandboxNeeds
	if d, ok := e.orig.(SandboxDeclarer); ok {
		needs = d.SandboxNeeds(*env)
	}
	sc := e.cfg.process.Sandbox
	p := sandbox.Policy{
		Read:   sandbox.SystemReadPaths(),
		Write:  append(sandbox.SystemWritePaths(), needs.Write...),
		Limits: sandbox.Limits{FileSize: sc.MaxFileSize, OpenFiles: sc.MaxOpenFiles, Procs: sc.MaxProcs},
	}
	dirs := env.Dirs()
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
		if err := p.AllowDial(addr); err != nil {
			return nil, nil, fmt.Errorf("sandbox: the scanner's SandboxNeeds: %w", err)
		}
	}
	return &p, needs.Env, nil
}
