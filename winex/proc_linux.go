//go:build linux

package winex

import (
	"os"
	"os/exec"
	"syscall"
	"unsafe"
)

// proc is a started child. On Linux waitExit leaves the child unreaped
// (waitid with WNOWAIT), so that its process group can still be killed safely
// before reap collects it.
type proc struct {
	cmd *exec.Cmd
}

func (p *proc) waitExit() {
	const (
		pPID    = 1          // P_PID
		wNoWait = 0x01000000 // WNOWAIT
	)
	var info [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(p.cmd.Process.Pid),
			uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|wNoWait, 0, 0)
		if errno != syscall.EINTR {
			return // exited, or an error that reap will report
		}
	}
}

func (p *proc) reap() (*os.ProcessState, error) {
	err := p.cmd.Wait()
	return p.cmd.ProcessState, err
}
