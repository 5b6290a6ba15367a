package fetch

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
)

// HeadSize is the most Content.Head returns: enough for type detection
// (github.com/gabriel-vasile/mimetype reads 4096 bytes by default).
const HeadSize = 4096

// Content is fetched artifact content. It is immutable once returned and safe
// for concurrent use. It lives in one of three places:
//
//   - in memory (up to Policy.MemoryLimit, or FromBytes);
//   - in a temp file of its own (larger content that was streamed: HTTP,
//     stdin, data:, custom schemes);
//   - in the original local file it was fetched from, never copied (a file
//     of at most MemoryLimit is also held in memory, read in the pass that
//     hashed it, and its bytes are served from there).
//
// Close removes any temp file; call it when done (a deferred Close also runs
// when the caller panics). The zero Content is not usable: get one from
// Fetch, Open, FromReader or FromBytes.
type Content struct {
	sum  string
	size int64
	head []byte

	mem       []byte      // the content, when held in memory
	local     string      // absolute path of the original local file, if any
	localInfo os.FileInfo // its state once hashed, to detect later changes

	tempDir, tempPrefix string // where Path writes in-memory content

	mu     sync.Mutex
	closed bool
	temp   string // temp file owned by this Content ("" if none)
}

// FromBytes returns in-memory content holding a copy of b (for tests, and for
// URL artifacts whose content is the URL text). Its Path, if asked for, is a
// temp file under os.TempDir() named with the default prefix.
func FromBytes(b []byte) *Content {
	mem := bytes.Clone(b)
	if mem == nil {
		mem = []byte{}
	}
	return newMemContent(mem, sha256Hex(mem), "", "")
}

func newMemContent(mem []byte, sum, tempDir, tempPrefix string) *Content {
	return &Content{sum: sum, size: int64(len(mem)), head: mem[:min(len(mem), HeadSize):min(len(mem), HeadSize)],
		mem: mem, tempDir: tempDir, tempPrefix: tempPrefix}
}

// SHA256 returns the lowercase hex SHA-256 of the content, computed in the
// same pass that read it.
func (c *Content) SHA256() string { return c.sum }

// Size returns the content's size in bytes.
func (c *Content) Size() int64 { return c.size }

// Head returns the first min(Size, HeadSize) bytes, for type detection. It
// stays valid after Close. Callers must not modify it.
func (c *Content) Head() []byte { return c.head }

// Open returns a new reader positioned at the start of the content; every
// call is independent and calls may run concurrently. The reader also
// implements io.ReaderAt and io.Seeker. Close the reader when done (closing
// the Content does not invalidate readers already open). Errors: ErrClosed
// after Close; ErrChanged when the original local file, read again from
// disk (content not held in memory), was modified since it was hashed;
// ErrUnreachable when a file cannot be opened.
func (c *Content) Open() (io.ReadCloser, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	switch {
	case c.mem != nil:
		return memReader{bytes.NewReader(c.mem)}, nil
	case c.local != "":
		return c.openLocal()
	default:
		f, err := os.Open(c.temp)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		return f, nil
	}
}

// Bytes returns the whole content in a new slice the caller owns, when Size
// <= max; otherwise a *TooLargeError (matching ErrTooLarge) without reading
// anything. It reads exactly Size bytes. Errors are those of Open.
func (c *Content) Bytes(max int64) ([]byte, error) { return c.bytes(max, true) }

// View is Bytes without the copy of content held in memory: it returns the
// held slice itself, which the caller must not modify (Open, Path and Head
// read the same bytes). Content on disk is read into a new slice.
func (c *Content) View(max int64) ([]byte, error) { return c.bytes(max, false) }

func (c *Content) bytes(max int64, clone bool) ([]byte, error) {
	if c.size > max {
		return nil, &TooLargeError{Limit: max, Size: c.size}
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if c.mem != nil {
		c.mu.Unlock()
		if !clone {
			return c.mem, nil
		}
		return bytes.Clone(c.mem), nil
	}
	c.mu.Unlock()
	r, err := c.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b := make([]byte, c.size)
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return nil, ErrChanged
		}
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	return b, nil
}

// Path returns the path of a file holding the content, for command-line
// scanners: the original local file (an absolute path) when the content was
// fetched from one, its temp file when it was spilled, and otherwise a temp
// file (mode 0600, under the Policy's TempDir, named with its TempPrefix)
// written once on the first call; concurrent calls share it. The file
// belongs to the Content: do not modify or remove it; Close removes temp
// files. Errors: ErrClosed after Close; ErrChanged when the original local
// file was modified since it was hashed; ErrUnreachable when the temp file
// cannot be written.
func (c *Content) Path() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return "", ErrClosed
	}
	if c.local != "" {
		f, err := c.openLocal()
		if err != nil {
			return "", err
		}
		f.Close()
		return c.local, nil
	}
	if c.temp != "" {
		return c.temp, nil
	}
	path, err := writeTemp(c.tempDir, c.tempPrefix, c.mem)
	if err != nil {
		return "", err
	}
	c.temp = path
	return path, nil
}

// Close removes every temp file the Content owns. It is idempotent and safe
// to call concurrently with other methods; afterwards Open, Bytes and Path
// return ErrClosed (SHA256, Size and Head still work). Readers already
// returned by Open keep working. The only possible error is a failure to
// remove the temp file, reported by the first call.
func (c *Content) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if c.temp == "" {
		return nil
	}
	err := os.Remove(c.temp)
	c.temp = ""
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("fetch: removing temp file: %w", err)
	}
	return nil
}

// openLocal opens the original local file and checks that it is still the
// one that was hashed: same file, size and modification time.
func (c *Content) openLocal() (*os.File, error) {
	f, err := os.Open(c.local)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("%w: %w", ErrChanged, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	if !sameState(c.localInfo, fi) {
		f.Close()
		return nil, fmt.Errorf("%w: %s", ErrChanged, c.local)
	}
	return f, nil
}

func sameState(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// memReader is a bytes.Reader with a no-op Close.
type memReader struct{ *bytes.Reader }

func (memReader) Close() error { return nil }

// writeTemp writes b to a new 0600 temp file and returns its path; on failure
// nothing is left behind.
func writeTemp(dir, prefix string, b []byte) (string, error) {
	f, err := createTemp(dir, prefix)
	if err != nil {
		return "", err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("%w: writing temp file: %w", ErrUnreachable, err)
	}
	return f.Name(), nil
}

// createTemp creates a 0600 temp file in dir (os.TempDir() when empty) named
// prefix (the default prefix when empty), the process ID, "-" and a random
// part, so that RemoveStale can tell whose it is.
func createTemp(dir, prefix string) (*os.File, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	if prefix == "" {
		prefix = defaultTempPrefix()
	}
	f, err := os.CreateTemp(dir, prefix+pidDash+"*")
	if err != nil {
		return nil, fmt.Errorf("%w: creating temp file: %w", ErrUnreachable, err)
	}
	return f, nil
}
