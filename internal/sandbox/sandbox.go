// Package sandbox confines psengine's worker child processes (the process
// backend): what a compromised scanner in a child can reach. The parent
// builds a Policy per child, starts the child with an allow-listed
// environment (Environ) and a private directory (Dir), and the child,
// before its first task, applies the Policy to itself (Apply): resource
// limits, no_new_privs, no capabilities, Landlock filesystem and network
// rules, and a seccomp filter denying the system calls a scanner has no
// use for. Each part is best effort where the kernel lacks it, and Apply's
// Report says what is in force.
package sandbox

import (
	"cmp"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults of Limits.
const (
	// DefaultFileSize bounds the files a child writes: twice fetch's
	// default artifact size cap.
	DefaultFileSize int64 = 4 << 30
	// DefaultOpenFiles bounds a child's open descriptors.
	DefaultOpenFiles uint64 = 4096
	// DefaultProcs bounds the processes and threads of the child's user
	// (RLIMIT_NPROC counts them per user, and never for uid 0).
	DefaultProcs uint64 = 1024
)

// Limits are a child's resource limits; zero fields take the defaults.
// Core dumps are always off.
type Limits struct {
	FileSize  int64  // RLIMIT_FSIZE, bytes
	OpenFiles uint64 // RLIMIT_NOFILE
	Procs     uint64 // RLIMIT_NPROC
}

// withDefaults fills the zero fields.
func (l Limits) withDefaults() Limits {
	if l.FileSize <= 0 {
		l.FileSize = DefaultFileSize
	}
	l.OpenFiles = cmp.Or(l.OpenFiles, DefaultOpenFiles)
	l.Procs = cmp.Or(l.Procs, DefaultProcs)
	return l
}

// Policy is what one child may do. It crosses to the child with
// encoding/gob. Paths that do not exist are skipped.
type Policy struct {
	// Read lists the files and directories (with everything under them)
	// the child may read and execute.
	Read []string
	// Write lists the files and directories the child may also write,
	// create in, rename in and remove from.
	Write []string
	// Unix lists the Unix socket files the child may connect to.
	Unix []string
	// TCP lists the TCP ports the child may connect to, on any host
	// (Landlock's network rules are per port). Binding is never allowed.
	TCP []uint16
	// Limits are its resource limits.
	Limits Limits
}

// Report says what Apply put in force, for the engine's log.
type Report struct {
	NoNewPrivs  bool
	CapsDropped bool // every capability, the bounding set too
	// Landlock is the Landlock ABI version in force (0: none), with the
	// parts it restricts.
	Landlock                int
	LandlockFS, LandlockNet bool
	LandlockScoped          bool // abstract Unix sockets and signals
	ReadRules, WriteRules   int  // paths granted
	TCPPorts                []uint16
	Seccomp                 bool
	SeccompDenied           int // system calls denied (EPERM)
	Limits                  Limits
	UID, GID                int
	ProcLimitEnforced       bool // RLIMIT_NPROC binds (not for uid 0)
	Missing                 []string
	Took                    time.Duration // how long Apply took
}

// Attrs are r as slog attributes, one line for the engine's log.
func (r Report) Attrs() []any {
	ll := "unavailable"
	if r.Landlock > 0 {
		var parts []string
		if r.LandlockFS {
			parts = append(parts, fmt.Sprintf("fs (read %d, write %d paths)", r.ReadRules, r.WriteRules))
		}
		if r.LandlockNet {
			parts = append(parts, fmt.Sprintf("net (tcp connect %v, no bind)", r.TCPPorts))
		}
		if r.LandlockScoped {
			parts = append(parts, "scoped (abstract unix sockets, signals)")
		}
		ll = fmt.Sprintf("ABI %d: %s", r.Landlock, strings.Join(parts, ", "))
	}
	sc := "unavailable"
	if r.Seccomp {
		sc = fmt.Sprintf("%d system calls denied with EPERM", r.SeccompDenied)
	}
	nproc := strconv.FormatUint(r.Limits.Procs, 10)
	if !r.ProcLimitEnforced {
		nproc += " (not enforced for uid 0)"
	}
	attrs := []any{
		"no_new_privs", r.NoNewPrivs, "capabilities_dropped", r.CapsDropped,
		"landlock", ll, "seccomp", sc,
		"rlimits", fmt.Sprintf("core 0, fsize %d, nofile %d, nproc %s", r.Limits.FileSize, r.Limits.OpenFiles, nproc),
		"uid", r.UID, "gid", r.GID, "setup", r.Took.Round(time.Microsecond).String(),
	}
	if len(r.Missing) > 0 {
		attrs = append(attrs, "not_enforced", strings.Join(r.Missing, "; "))
	}
	return attrs
}

// SystemReadPaths are the system directories and files every child may
// read: programs, libraries, shared data, /proc and /sys, harmless
// devices, and /etc without its secrets (see etcEntries).
func SystemReadPaths() []string {
	paths := []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt",
		"/proc", "/sys", "/dev/urandom", "/dev/random", "/dev/zero"}
	return append(paths, etcEntries("/etc")...)
}

// SystemWritePaths are the devices every child may write.
func SystemWritePaths() []string { return []string{"/dev/null", "/dev/full", "/dev/tty"} }

// etcSecrets are the entries of /etc a child never reads: password
// hashes, sudo rules, SSH host keys, TLS private keys, Kerberos keys.
var etcSecrets = []string{"shadow", "shadow-", "gshadow", "gshadow-", "sudoers", "sudoers.d",
	"ssh", "security", "krb5.keytab", ".pwd.lock", "ssl", "credstore", "credstore.encrypted", "wireguard"}

// etcEntries lists the entries of dir but its secrets; of ssl, only the
// public certificates.
func etcEntries(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if !slices.Contains(etcSecrets, e.Name()) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return append(out, filepath.Join(dir, "ssl", "certs"), filepath.Join(dir, "ssl", "openssl.cnf"))
}

// NeverPassed is the variable no child receives, whatever asks for it:
// with the webhook's secret, a compromised scanner could sign bounties.
const NeverPassed = "PSENGINE_WEBHOOK_SECRET"

// baseAllowed are the variables every child keeps: the basics of a
// process, the locale, the engine's directories and log settings, and the
// Go runtime's knobs.
var baseAllowed = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPPREFIX",
	"PSENGINE_HOME", "PSENGINE_BIN_DIR", "PSENGINE_LIB_DIR", "PSENGINE_CONFIG_DIR", "PSENGINE_CACHE_DIR",
	"PSENGINE_DATA_DIR", "PSENGINE_STATE_DIR", "PSENGINE_RUNTIME_DIR", "PSENGINE_SECRETS_DIR",
	"PSENGINE_SCANNER", "PSENGINE_UPDATER", "LOG_LEVEL", "LOG_FORMAT",
	"GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GODEBUG", "GOTRACEBACK", "GORACE", "GOCOVERDIR"}

// Environ is a child's environment: of environ (KEY=VALUE, as
// os.Environ), the variables in the base allow-list (the basics, LC_*,
// the engine's PSENGINE_* directories, log and Go runtime settings) or
// named in allow, then extra as it is; NeverPassed is dropped from all.
// Later entries win, as with exec.Cmd.
func Environ(environ, allow, extra []string) []string {
	keep := func(name string) bool {
		return name != NeverPassed && (slices.Contains(baseAllowed, name) || strings.HasPrefix(name, "LC_") || slices.Contains(allow, name))
	}
	var out []string
	for _, kv := range environ {
		if name, _, ok := strings.Cut(kv, "="); ok && keep(name) {
			out = append(out, kv)
		}
	}
	for _, kv := range extra {
		if name, _, _ := strings.Cut(kv, "="); name != NeverPassed {
			out = append(out, kv)
		}
	}
	return out
}

// AllowDial lets the child connect to addr: "unix:PATH", "tcp:HOST:PORT"
// or "HOST:PORT" (Landlock confines TCP by port).
func (p *Policy) AllowDial(addr string) error {
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
