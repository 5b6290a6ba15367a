//go:build unix

package clamdtest

import (
	"io"
	"net"
	"os"
	"syscall"
)

// fdReader reads a unix connection and keeps the file descriptors that come
// with its bytes (SCM_RIGHTS), as clamd does for FILDES.
type fdReader struct {
	uc  *net.UnixConn
	oob []byte
	fds []int
}

// newFDReader returns a reader of nc that keeps the descriptors passed on
// it, or nil when nc is not a unix socket.
func newFDReader(nc net.Conn) *fdReader {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return nil
	}
	return &fdReader{uc: uc, oob: make([]byte, syscall.CmsgSpace(4*8))}
}

func (r *fdReader) Read(p []byte) (int, error) {
	n, oobn, _, _, err := r.uc.ReadMsgUnix(p, r.oob)
	n = max(n, 0) // -1 with some errors
	if oobn > 0 {
		msgs, _ := syscall.ParseSocketControlMessage(r.oob[:oobn])
		for _, m := range msgs {
			if fds, err := syscall.ParseUnixRights(&m); err == nil {
				r.fds = append(r.fds, fds...)
			}
		}
	}
	return n, err
}

// take returns the oldest descriptor received and not taken yet, as a file
// the caller closes.
func (r *fdReader) take() (*os.File, bool) {
	if r == nil || len(r.fds) == 0 {
		return nil, false
	}
	fd := r.fds[0]
	r.fds = r.fds[1:]
	return os.NewFile(uintptr(fd), "passed"), true
}

// close closes the descriptors received and not taken.
func (r *fdReader) close() {
	if r == nil {
		return
	}
	for _, fd := range r.fds {
		syscall.Close(fd)
	}
	r.fds = nil
}

// readAll reads the whole file from its start, whatever its offset (as
// clamd does).
func readAll(f *os.File) ([]byte, error) {
	return io.ReadAll(io.NewSectionReader(f, 0, 1<<62))
}
