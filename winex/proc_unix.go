//go:build unix

package winex

import (
	"os/exec"
	"syscall"
)

// ownGroup makes the child the leader of a new process group, so that one
// kill reaches everything it starts (unless they leave the group), and, on
// Linux, has the kernel kill it should this process die first (a worker
// child of the process backend killed at its deadline, say).
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	parentDeathSignal(cmd.SysProcAttr)
}

// killGroup sends SIGKILL to the child's process group. It is called before
// the leader is reaped, so the group id cannot have been reused.
func (p *proc) killGroup() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) // ESRCH: nothing left
}
