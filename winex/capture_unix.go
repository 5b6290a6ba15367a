//go:build unix

package winex

import (
	"os"
	"syscall"
)

// drain reads, without blocking, what is left in the pipe after the read
// deadline fired: the program's last output. It stops at an empty pipe, at
// EOF, or after a bound, should an escaped process keep writing.
func (c *capture) drain(b []byte) {
	if c.r.SetReadDeadline(noDeadline) != nil {
		return
	}
	rc, err := c.r.SyscallConn()
	if err != nil {
		return
	}
	const maxReads = 64             // 2 MiB: more than a full pipe buffer
	rc.Read(func(fd uintptr) bool { //nolint:errcheck // best effort
		for i := 0; i < maxReads; i++ {
			n, err := syscall.Read(int(fd), b)
			if n > 0 {
				c.add(b[:n])
				continue
			}
			if err == syscall.EINTR {
				continue
			}
			break // EOF, EAGAIN (empty) or an error
		}
		return true
	})
}

// removeOpenFile unlinks a temp file at once: the descriptors stay valid.
func removeOpenFile(f *os.File) { os.Remove(f.Name()) }

func finishRemove(*os.File) {}
