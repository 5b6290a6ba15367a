//go:build windows

package winex

import (
	"os"
	"os/exec"
	"syscall"
)

// proc is a started child. On Windows only the program itself is killed: its
// children are not tracked (no job object).
type proc struct {
	cmd *exec.Cmd
	err error
}

func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP}
}

func (p *proc) waitExit() { p.err = p.cmd.Wait() }

func (p *proc) killGroup() { _ = p.cmd.Process.Kill() }

func (p *proc) reap() (*os.ProcessState, error) { return p.cmd.ProcessState, p.err }
