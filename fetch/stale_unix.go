//go:build unix

package fetch

import "syscall"

// processGone reports whether no process has ID pid. Signal 0 only checks:
// ESRCH means none; EPERM means one runs that we may not signal.
func processGone(pid int) bool { return syscall.Kill(pid, 0) == syscall.ESRCH }
