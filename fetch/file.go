package fetch

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// File returns the path of a real file that already holds the content: the
// original local file it was fetched from, or the temp file it spilled to.
// Unlike Path it never writes one: ok is false for content held only in
// memory, and after Close. The file belongs to the Content (see Path).
func (c *Content) File() (path string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return "", false
	case c.local != "":
		return c.local, true
	case c.temp != "":
		return c.temp, true
	}
	return "", false
}

// OpenFile opens, for reading, the real file that already holds the
// content (see File): the original local file, checked unchanged since it
// was hashed (the file returned is the one checked: nothing can replace it
// between the check and its use), or the temp file the content spilled to.
// The caller closes it. Errors: ErrNoFile for content held only in memory
// (Path writes a temp file; Open reads the memory), and those of Open.
func (c *Content) OpenFile() (*os.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return nil, ErrClosed
	case c.local != "":
		return c.openLocal()
	case c.temp != "":
		f, err := os.Open(c.temp)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		return f, nil
	}
	return nil, ErrNoFile
}

// FromFile returns the content of the existing file path, whose size and
// lowercase hex SHA-256 are known already (another process fetched and
// hashed it): the file is neither copied nor hashed again, only its head is
// read, and Close leaves it in place. Like content fetched from a local
// file, it reports ErrChanged if the file is modified afterwards. It fails
// with ErrUnreachable when the file cannot be read, and with ErrChanged when
// its size is not size.
func FromFile(path string, size int64, sha256Hex string) (*Content, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != size {
		return nil, fmt.Errorf("%w: %s is not a regular file of %d bytes", ErrChanged, abs, size)
	}
	head := make([]byte, min(size, HeadSize))
	if _, err := io.ReadFull(f, head); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	return &Content{sum: sha256Hex, size: size, head: head, local: abs, localInfo: fi}, nil
}
