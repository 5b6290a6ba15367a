package child

import (
	"fmt"
	"os"
	"syscall"
)

// sysProcAttr puts the child in a process group of its own and has the
// kernel signal it when the parent dies (even by SIGKILL): SIGTERM, which
// the child (Attach) answers by killing its whole process group, so that
// what its scanner started dies with it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

func rss(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return 0, fmt.Errorf("child: memory of %d: %w", pid, err)
	}
	return rssFromStatm(data)
}
