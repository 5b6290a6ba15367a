package child

import (
	"fmt"
	"os"
	"syscall"
)

// sysProcAttr puts the child in a process group of its own and has the
// kernel kill it when the parent dies (even by SIGKILL).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func rss(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return 0, fmt.Errorf("child: memory of %d: %w", pid, err)
	}
	return rssFromStatm(data)
}
