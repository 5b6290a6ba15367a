//go:build unix && !linux

package winex

import (
	"os"
	"os/exec"
)

// proc is a started child. Without waitid(WNOWAIT) here, waitExit reaps the
// leader; the group is killed right after, a window in which the group id
// could only be reused after the kernel wrapped around its pid space.
type proc struct {
	cmd *exec.Cmd
	err error
}

func (p *proc) waitExit() { p.err = p.cmd.Wait() }

func (p *proc) reap() (*os.ProcessState, error) { return p.cmd.ProcessState, p.err }
