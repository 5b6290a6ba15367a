//go:build unix && !linux

package child

import (
	"errors"
	"syscall"
)

// sysProcAttr puts the child in a process group of its own. There is no
// parent-death signal here: a child also retires when its input ends,
// which it does when the parent dies.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func rss(int) (int64, error) { return 0, errors.New("child: memory use is read on Linux only") }
