//go:build linux

package sandbox

import (
	"fmt"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/sys/unix"
)

// deniedSyscalls are the system calls a scanner has no use for and an
// attacker has: tracing and reading other processes, mounting and
// namespaces (the user namespace is the kernel's largest attack surface),
// loading kernel code (modules, kexec, BPF), the keyring, perf events,
// userfaultfd and io_uring (whose operations seccomp does not see), file
// handles (the classic container escape), clocks, swap, reboot and the
// like. Names this architecture lacks are skipped.
var deniedSyscalls = []string{
	"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
	"mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig",
	"fsmount", "fspick", "mount_setattr", "unshare", "setns",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "bpf",
	"keyctl", "add_key", "request_key", "perf_event_open", "userfaultfd",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"open_by_handle_at", "name_to_handle_at", "fanotify_init", "lookup_dcookie",
	"reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "vhangup",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname",
	"iopl", "ioperm", "uselib", "_sysctl", "nfsservctl",
}

// namespaceFlags are the clone flags that make new namespaces.
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// setidBits are the mode bits chmod must not set: a root child could
// otherwise leave a setuid-root program behind for anyone.
const setidBits = unix.S_ISUID | unix.S_ISGID

// seccompPolicy is the filter: the denied calls fail with EPERM; clone
// with a namespace flag fails with EPERM; chmod of set-id bits fails with
// EPERM; clone3, whose flags a filter cannot read, fails with ENOSYS, so
// that the C library falls back to clone. Everything else is allowed.
func seccompPolicy() (seccomp.Policy, int, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return seccomp.Policy{}, 0, err
	}
	var names []string
	for _, n := range deniedSyscalls {
		if _, ok := info.SyscallNames[n]; ok {
			names = append(names, n)
		}
	}
	var conditional []seccomp.NameWithConditions
	cond := func(name string, arg uint32, bits uint64) {
		if _, ok := info.SyscallNames[name]; ok {
			conditional = append(conditional, seccomp.NameWithConditions{Name: name,
				Conditions: seccomp.ArgumentConditions{{Argument: arg, Operation: seccomp.BitsSet, Value: bits}}})
		}
	}
	cond("clone", 0, namespaceFlags)
	if info.Name == "s390x" { // its clone takes the flags second
		conditional = conditional[:0]
		cond("clone", 1, namespaceFlags)
	}
	cond("chmod", 1, setidBits)
	cond("fchmod", 1, setidBits)
	cond("fchmodat", 2, setidBits)
	cond("fchmodat2", 2, setidBits)
	groups := []seccomp.SyscallGroup{
		{Names: names, NamesWithCondtions: conditional, Action: seccomp.ActionErrno},
	}
	if _, ok := info.SyscallNames["clone3"]; ok {
		groups = append(groups, seccomp.SyscallGroup{Names: []string{"clone3"}, Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS)})
	}
	return seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: groups}, len(names) + len(conditional) + 1, nil
}

// loadSeccomp installs the filter on every thread (TSYNC).
func loadSeccomp(r *Report) error {
	if !seccomp.Supported() {
		r.Missing = append(r.Missing, "seccomp: not available in this kernel")
		return nil
	}
	policy, n, err := seccompPolicy()
	if err != nil {
		r.Missing = append(r.Missing, fmt.Sprintf("seccomp: %v", err))
		return nil
	}
	if err := seccomp.LoadFilter(seccomp.Filter{NoNewPrivs: true, Flag: seccomp.FilterFlagTSync, Policy: policy}); err != nil {
		return fmt.Errorf("sandbox: seccomp: %w", err)
	}
	r.Seccomp, r.SeccompDenied = true, n
	return nil
}
