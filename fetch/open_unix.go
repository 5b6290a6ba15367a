//go:build unix

package fetch

import (
	"os"
	"syscall"
)

// openFile opens path for reading. Unlike os.Open it does not try to
// register the descriptor with the runtime's poller: for a regular file that
// attempt costs four fcntl calls and an epoll_ctl that fails, more than the
// read of a small file. Reads of a FIFO or device opened this way block a
// thread instead of parking in the poller, as reads of os.Stdin do.
func openFile(path string) (*os.File, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err == syscall.EINTR { // opening a FIFO waits for a writer
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
}
