//go:build linux

package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/landlock-lsm/go-landlock/landlock"
	llsyscall "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/cap"
)

// Apply confines this process (every thread, and what it starts from now
// on) to p, in this order: resource limits (core dumps off, file size,
// open files, processes), no capabilities (the bounding set too, and
// root's exec privileges locked away), no_new_privs, Landlock (p's paths
// and ports; abstract Unix sockets and signals scoped), then the seccomp
// filter. It cannot be undone. Each part the kernel lacks is skipped and
// named in the Report's Missing; an error means a part that the kernel
// has failed, and the process must not go on.
func Apply(p Policy) (Report, error) {
	start := time.Now()
	r, err := apply(p)
	r.Took = time.Since(start)
	return r, err
}

func apply(p Policy) (Report, error) {
	r := Report{Limits: p.Limits.withDefaults(), UID: os.Getuid(), GID: os.Getgid()}
	if err := setLimits(&r); err != nil {
		return r, err
	}
	if err := dropCapabilities(); err != nil {
		return r, err
	}
	r.CapsDropped = true
	if err := restrictLandlock(p, &r); err != nil {
		return r, err
	}
	if err := loadSeccomp(&r); err != nil {
		return r, err
	}
	nnp, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	r.NoNewPrivs = err == nil && nnp == 1
	if !r.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return r, fmt.Errorf("sandbox: no_new_privs: %w", err)
		}
		r.NoNewPrivs = true
	}
	return r, nil
}

// setLimits sets the resource limits, soft and hard. RLIMIT_NPROC counts
// every task of the child's user on the machine: when the child runs as
// the engine's own (non-root) user, its limit is the user's tasks now
// plus r.Limits.Procs, so that the engine's own threads do not eat it.
// For uid 0 the kernel never enforces it.
func setLimits(r *Report) error {
	nproc := r.Limits.Procs
	if r.UID != 0 && procUID("/proc/"+strconv.Itoa(os.Getppid())) == r.UID {
		nproc += userTasks(r.UID)
	}
	r.ProcLimitEnforced = r.UID != 0
	for _, l := range []struct {
		name     string
		resource int
		value    uint64
	}{
		{"core", unix.RLIMIT_CORE, 0},
		{"fsize", unix.RLIMIT_FSIZE, uint64(r.Limits.FileSize)},
		{"nofile", unix.RLIMIT_NOFILE, r.Limits.OpenFiles},
		{"nproc", unix.RLIMIT_NPROC, nproc},
	} {
		var cur unix.Rlimit
		if err := unix.Getrlimit(l.resource, &cur); err != nil {
			return fmt.Errorf("sandbox: rlimit %s: %w", l.name, err)
		}
		v := min(l.value, cur.Max) // never above the hard limit we were given
		if err := unix.Setrlimit(l.resource, &unix.Rlimit{Cur: v, Max: v}); err != nil {
			return fmt.Errorf("sandbox: rlimit %s: %w", l.name, err)
		}
	}
	return nil
}

// procUID is the real uid of the process whose /proc directory is dir
// (-1: unknown).
func procUID(dir string) int {
	st, err := os.Stat(dir)
	if err != nil {
		return -1
	}
	if sys, ok := st.Sys().(*unix.Stat_t); ok {
		return int(sys.Uid)
	}
	return -1
}

// userTasks counts the threads of uid's processes.
func userTasks(uid int) uint64 {
	entries, _ := os.ReadDir("/proc")
	var n uint64
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		if procUID(dir) != uid {
			continue
		}
		tasks, _ := os.ReadDir(filepath.Join(dir, "task"))
		n += uint64(max(len(tasks), 1))
	}
	return n
}

// dropCapabilities drops every capability of every thread, the bounding
// and ambient sets included, and locks the secure bits so that uid 0
// gains none at exec. A process without capabilities has nothing to drop.
func dropCapabilities() error {
	empty, err := cap.GetProc().Cf(cap.NewSet())
	if err == nil && empty == 0 && os.Geteuid() != 0 {
		return nil // an unprivileged user's process: the bounding set is moot under no_new_privs
	}
	if err := cap.ModeNoPriv.Set(); err != nil {
		return fmt.Errorf("sandbox: dropping capabilities: %w", err)
	}
	return nil
}

// restrictLandlock applies p's paths and ports with the newest Landlock
// ABI the kernel has.
func restrictLandlock(p Policy, r *Report) error {
	abi, err := llsyscall.LandlockGetABIVersion()
	if err != nil || abi < 1 {
		r.Missing = append(r.Missing, "landlock: not available in this kernel (filesystem and network stay open)")
		return nil
	}
	var rules []landlock.Rule
	for _, path := range p.Read {
		if rule, ok := pathRule(path, false, abi); ok {
			rules = append(rules, rule)
			r.ReadRules++
		}
	}
	for _, path := range p.Write {
		if rule, ok := pathRule(path, true, abi); ok {
			rules = append(rules, rule)
			r.WriteRules++
		}
	}
	for _, path := range p.Unix {
		if _, err := os.Stat(path); err == nil {
			rules = append(rules, landlock.ROFiles(path).WithResolveUnix())
			r.ReadRules++
		}
	}
	for _, port := range p.TCP {
		rules = append(rules, landlock.ConnectTCP(port))
	}
	if err := landlock.V11.BestEffort().Restrict(rules...); err != nil {
		return fmt.Errorf("sandbox: landlock: %w", err)
	}
	r.Landlock = min(abi, 11)
	r.LandlockFS = true
	r.LandlockNet = abi >= 4
	r.LandlockScoped = abi >= 6
	if r.LandlockNet {
		r.TCPPorts = p.TCP
	} else {
		r.Missing = append(r.Missing, fmt.Sprintf("landlock network rules: need ABI 4, the kernel has %d (TCP stays open)", abi))
	}
	if abi < 9 && len(p.Unix) > 0 {
		// Connecting to a Unix socket is not a Landlock right before ABI 9:
		// any socket file the child can name is reachable.
		r.Missing = append(r.Missing, fmt.Sprintf("landlock unix socket rules: need ABI 9, the kernel has %d (unix sockets stay open)", abi))
	}
	return nil
}

// pathRule is the rule for one path, or false when it does not exist.
func pathRule(path string, write bool, abi int) (landlock.Rule, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, false
	}
	switch {
	case fi.IsDir() && write && abi >= 2:
		return landlock.RWDirs(path).WithRefer(), true // renames across its directories
	case fi.IsDir() && write:
		return landlock.RWDirs(path), true
	case fi.IsDir():
		return landlock.RODirs(path), true
	case write && fi.Mode()&os.ModeDevice != 0:
		return landlock.RWFiles(path).WithIoctlDev(), true
	case write:
		return landlock.RWFiles(path), true
	}
	return landlock.ROFiles(path), true
}
