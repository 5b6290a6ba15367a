package winex

import (
	"errors"
	"io"
	"os"
	"time"
)

var noDeadline time.Time

// capture collects one output stream of a child, keeping at most limit bytes.
// In pipe mode a goroutine reads until EOF or until finish says the program is
// gone; in file mode the child writes to an unlinked temp file read back by
// finish, so that a daemon keeping the descriptor costs nothing.
type capture struct {
	limit     int64
	buf       []byte
	truncated bool

	w    *os.File // the child's end (pipe write end or the temp file)
	r    *os.File // pipe read end; nil in file mode
	done chan struct{}
}

func newCapture(limit int64, file bool) (*capture, error) {
	c := &capture{limit: limit}
	if file {
		f, err := os.CreateTemp("", "winex-output-*")
		if err != nil {
			return nil, err
		}
		removeOpenFile(f)
		c.w = f
		return c, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	c.r, c.w = r, w
	return c, nil
}

// started is called once the child holds its copy of w.
func (c *capture) started() {
	if c.r == nil {
		return
	}
	c.w.Close()
	c.done = make(chan struct{})
	go c.readLoop()
}

func (c *capture) add(b []byte) {
	room := c.limit - int64(len(c.buf))
	if int64(len(b)) > room {
		b = b[:max(room, 0)]
		c.truncated = true
	}
	c.buf = append(c.buf, b...)
}

func (c *capture) readLoop() {
	defer close(c.done)
	b := make([]byte, 32<<10)
	for {
		n, err := c.r.Read(b)
		c.add(b[:n])
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.drain(b)
			}
			return
		}
	}
}

// finish returns the captured bytes once the program has exited (and its
// group was killed). It does not wait for other holders of the pipe: what is
// already in the pipe is drained without blocking, then the pipe is closed.
func (c *capture) finish() ([]byte, bool) {
	if c.r == nil {
		return c.readFile()
	}
	if c.done == nil { // never started
		return nil, false
	}
	// An expired deadline makes the reader drain and stop. Where pipes have
	// no deadlines (Windows), this waits for EOF instead.
	_ = c.r.SetReadDeadline(time.Now())
	<-c.done
	c.r.Close()
	return c.buf, c.truncated
}

func (c *capture) readFile() ([]byte, bool) {
	f := c.w
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, false
	}
	b, _ := io.ReadAll(io.LimitReader(f, c.limit+1))
	if int64(len(b)) > c.limit {
		return b[:c.limit], true
	}
	return b, false
}

// Close releases the parent's descriptors; safe after finish.
func (c *capture) Close() error {
	if c.r != nil {
		c.r.Close()
	}
	err := c.w.Close()
	finishRemove(c.w)
	return err
}
