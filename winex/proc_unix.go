//go:build unix

package winex

import (
	"os/exec"
	"syscall"
)

// ownGroup makes the child the leader of a new process group, so that one
// kill reaches everything it starts (unless they leave the group).
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killGroup sends SIGKILL to the child's process group. It is called before
// the leader is reaped, so the group id cannot have been reused.
func (p *proc) killGroup() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) // ESRCH: nothing left
}
