package fetch_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyswarm/psengine/fetch"
)

func TestFileOfContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a")
	data := bytes.Repeat([]byte("x"), 10000)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := fetch.Local().Fetch(t.Context(), path, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := c.File(); !ok || got != path {
		t.Errorf("File() = %q, %v; want the original file %q", got, ok, path)
	}
	mem := fetch.FromBytes([]byte("in memory"))
	if got, ok := mem.File(); ok {
		t.Errorf("File() of content in memory = %q; want none, and no temp file made", got)
	}
	_ = c.Close()
	if _, ok := c.File(); ok {
		t.Error("File() after Close")
	}

	known, err := fetch.FromFile(path, c.Size(), c.SHA256())
	if err != nil {
		t.Fatal(err)
	}
	if known.SHA256() != c.SHA256() || known.Size() != int64(len(data)) || !bytes.Equal(known.Head(), data[:fetch.HeadSize]) {
		t.Errorf("FromFile: sum %s size %d head %d bytes", known.SHA256(), known.Size(), len(known.Head()))
	}
	if p, _ := known.Path(); p != path {
		t.Errorf("Path() = %q, want the file itself", p)
	}
	if err := known.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("Close removed the file it does not own: %v", err)
	}
	if _, err := fetch.FromFile(path, 5, c.SHA256()); !errors.Is(err, fetch.ErrChanged) {
		t.Errorf("FromFile with the wrong size: %v, want ErrChanged", err)
	}
	if _, err := fetch.FromFile(filepath.Join(dir, "missing"), 5, ""); !errors.Is(err, fetch.ErrUnreachable) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("FromFile of a missing file: %v, want ErrUnreachable naming it", err)
	}
}

// OpenFile gives the checked local file itself, refuses one changed since
// it was hashed, and has nothing for content held only in memory.
func TestOpenFileOfContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a")
	data := []byte("small enough to be held in memory too")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := fetch.Local().Fetch(t.Context(), path, "")
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.OpenFile()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	_ = f.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("OpenFile read %q, %v; want the file's content", got, err)
	}
	if fi, err := os.Stat(path); err != nil || f.Name() != path || fi.Size() != int64(len(data)) {
		t.Errorf("OpenFile opened %q, want %q", f.Name(), path)
	}

	// Replaced after it was hashed: refused, not opened.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("another content, of another size"), 0o600); err != nil {
		t.Fatal(err)
	}
	if f, err := c.OpenFile(); !errors.Is(err, fetch.ErrChanged) {
		if f != nil {
			_ = f.Close()
		}
		t.Errorf("OpenFile of a replaced file: %v, want ErrChanged", err)
	}
	_ = c.Close()
	if _, err := c.OpenFile(); !errors.Is(err, fetch.ErrClosed) {
		t.Errorf("OpenFile after Close: %v, want ErrClosed", err)
	}

	mem := fetch.FromBytes([]byte("in memory"))
	if f, err := mem.OpenFile(); !errors.Is(err, fetch.ErrNoFile) {
		if f != nil {
			_ = f.Close()
		}
		t.Errorf("OpenFile of content in memory: %v, want ErrNoFile", err)
	}
	if _, ok := mem.File(); ok {
		t.Error("OpenFile of content in memory wrote a file")
	}
}
