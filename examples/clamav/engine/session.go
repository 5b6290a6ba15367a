package engine

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/polyswarm/psengine/examples/clamav/clamd"
)

// Session is a worker's link to clamd: one connection, dialled once, kept
// between scans and dialled again when clamd dropped it (a restart, the
// size-limit reply, one of its timeouts). It is safe for concurrent use: the
// kept connection serves one scan at a time, and a scan that finds it busy
// uses a connection of its own for that scan (an engine worker never does;
// a test calling Scan from many goroutines does).
type Session struct {
	addr clamd.Address
	idle chan *clamd.Conn // holds the kept connection while it is not in use

	mu        sync.Mutex
	version   clamd.Version // from the last VERSION asked on a new connection
	versionAt time.Time     // when
	stream    bool          // INSTREAM even on a unix socket
	closed    bool
}

// NewSession returns a session with clamd at addr; it dials on first use
// (or Connect).
func NewSession(addr clamd.Address) *Session {
	return &Session{addr: addr, idle: make(chan *clamd.Conn, 1)}
}

// Address is where the session connects.
func (s *Session) Address() clamd.Address { return s.addr }

// Connect dials clamd, asks its version and keeps the connection, unless
// one is kept already. Errors wrap clamd.ErrUnreachable (or the failure of
// the VERSION command).
func (s *Session) Connect(ctx context.Context) error {
	c, _, err := s.take(ctx)
	if err != nil {
		return err
	}
	s.put(c)
	return nil
}

// Version returns clamd's version as last seen on a new connection (the
// zero Version before the first).
func (s *Session) Version() clamd.Version {
	v, _ := s.VersionAt()
	return v
}

// VersionAt returns Version and when it was asked.
func (s *Session) VersionAt() (clamd.Version, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version, s.versionAt
}

// Content is what a scan sends to clamd: a stream of it, and, when it can
// be had, an open file holding it.
type Content struct {
	// Open returns a reader over the whole content, from the start, for
	// INSTREAM. The session closes it.
	Open func() (io.ReadCloser, error)
	// File, when not nil, returns an open file holding the content, whose
	// descriptor is passed to clamd (FILDES) on a unix socket. The session
	// closes it.
	File func() (*os.File, error)
}

// FileContent is the content of the file at path, opened for each scan.
func FileContent(path string) Content {
	return Content{
		Open: func() (io.ReadCloser, error) { return os.Open(path) },
		File: func() (*os.File, error) { return os.Open(path) },
	}
}

// Scan has clamd scan the content and returns its reply. On a unix socket
// with content that has a File (and unless the session streams, see
// SetStream), clamd is passed the file's descriptor (FILDES) and reads it
// itself; otherwise the content is streamed (INSTREAM). When the kept
// connection turns out to be dropped, it dials again and retries once,
// re-opening the content. An ERROR reply is returned with a
// *clamd.ReplyError; a clamd that cannot be reached gives an error wrapping
// clamd.ErrUnreachable, one lost during the scan clamd.ErrConnection.
func (s *Session) Scan(ctx context.Context, content Content) (clamd.Reply, error) {
	c, reused, err := s.take(ctx)
	if err != nil {
		return clamd.Reply{}, err
	}
	rep, err := s.scanOn(ctx, c, content)
	if err != nil && reused && errors.Is(err, clamd.ErrConnection) && ctx.Err() == nil {
		// clamd dropped the kept connection while it was idle: once more
		// on a new one.
		c.Close()
		if c, err = s.dial(ctx); err != nil {
			return clamd.Reply{}, err
		}
		rep, err = s.scanOn(ctx, c, content)
	}
	s.put(c)
	return rep, err
}

// SetStream makes the session stream every content (INSTREAM), even on a
// unix socket where it could pass a descriptor: for a clamd whose build
// lacks descriptor passing, and to compare the two.
func (s *Session) SetStream(stream bool) {
	s.mu.Lock()
	s.stream = stream
	s.mu.Unlock()
}

func (s *Session) streams() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stream
}

func (s *Session) scanOn(ctx context.Context, c *clamd.Conn, content Content) (clamd.Reply, error) {
	if content.File != nil && c.CanPassFD() && !s.streams() {
		f, err := content.File()
		if err != nil {
			return clamd.Reply{}, err
		}
		defer f.Close()
		return c.ScanFD(ctx, f)
	}
	if content.Open == nil {
		return clamd.Reply{}, errors.New("clamav: no content to stream")
	}
	r, err := content.Open()
	if err != nil {
		return clamd.Reply{}, err
	}
	defer r.Close()
	return c.InStream(ctx, r)
}

// take returns the kept connection when it is free (reused), else a new one.
func (s *Session) take(ctx context.Context) (c *clamd.Conn, reused bool, err error) {
	select {
	case c := <-s.idle:
		return c, true, nil
	default:
	}
	c, err = s.dial(ctx)
	return c, false, err
}

// dial opens a connection and refreshes the version from it.
func (s *Session) dial(ctx context.Context) (*clamd.Conn, error) {
	c, err := clamd.Dial(ctx, s.addr)
	if err != nil {
		return nil, err
	}
	v, err := c.Version(ctx)
	if err != nil {
		c.Close()
		return nil, err
	}
	s.mu.Lock()
	s.version, s.versionAt = v, time.Now()
	s.mu.Unlock()
	return c, nil
}

// put keeps a usable connection if none is kept, and closes it otherwise.
func (s *Session) put(c *clamd.Conn) {
	s.mu.Lock()
	if c.Err() == nil && !s.closed {
		select {
		case s.idle <- c:
			s.mu.Unlock()
			return
		default:
		}
	}
	s.mu.Unlock()
	c.Close()
}

// Close closes the kept connection; scans still running close theirs when
// they end. The session is not used again after Close.
func (s *Session) Close() error {
	s.mu.Lock()
	s.closed = true
	var c *clamd.Conn
	select {
	case c = <-s.idle:
	default:
	}
	s.mu.Unlock()
	if c == nil {
		return nil
	}
	return c.Close()
}
