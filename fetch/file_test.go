package fetch_test

import (
	"bytes"
	"errors"
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
