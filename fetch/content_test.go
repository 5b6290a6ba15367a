package fetch_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/polyswarm/psengine/fetch"
)

// kinds fetches the same bytes into each of the three places a Content lives.
func kinds(t *testing.T, want []byte) map[string]*fetch.Content {
	t.Helper()
	p, _ := testPolicy(t)
	file := filepath.Join(t.TempDir(), "local")
	if err := os.WriteFile(file, want, 0o600); err != nil {
		t.Fatal(err)
	}
	out := map[string]*fetch.Content{"memory": fetch.FromBytes(want)}
	var err error
	if out["local"], err = p.Fetch(t.Context(), file, ""); err != nil {
		t.Fatal(err)
	}
	p.MemoryLimit = 100
	if out["spilled"], err = p.FromReader(t.Context(), strings.NewReader(string(want)), ""); err != nil {
		t.Fatal(err)
	}
	for _, c := range out {
		t.Cleanup(func() { c.Close() })
	}
	return out
}

func TestContentConcurrentReaders(t *testing.T) {
	want := randomBytes(50_000, 8)
	for name, c := range kinds(t, want) {
		t.Run(name, func(t *testing.T) {
			var wg sync.WaitGroup
			paths := make([]string, 16)
			for i := range 16 {
				wg.Go(func() {
					if got := contentBytes(t, c); !bytesEqual(got, want) {
						t.Errorf("reader %d: %d bytes, want %d", i, len(got), len(want))
					}
					var err error
					if paths[i], err = c.Path(); err != nil {
						t.Error(err)
					}
					if b, err := c.Bytes(1 << 20); err != nil || !bytesEqual(b, want) {
						t.Errorf("Bytes: %d bytes, %v", len(b), err)
					}
				})
			}
			wg.Wait()
			for _, p := range paths[1:] {
				if p != paths[0] {
					t.Fatalf("Path() gave %s and %s; want one file", paths[0], p)
				}
			}
		})
	}
}

func TestContentClose(t *testing.T) {
	want := randomBytes(10_000, 9)
	for name, c := range kinds(t, want) {
		t.Run(name, func(t *testing.T) {
			path, err := c.Path()
			if err != nil {
				t.Fatal(err)
			}
			open, err := c.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer open.Close()
			var wg sync.WaitGroup
			for range 4 { // Close races with itself and with readers
				wg.Go(func() {
					if err := c.Close(); err != nil {
						t.Error(err)
					}
				})
				wg.Go(func() { c.Path() })
			}
			wg.Wait()
			if _, err := c.Open(); !errors.Is(err, fetch.ErrClosed) {
				t.Errorf("Open after Close = %v, want ErrClosed", err)
			}
			if _, err := c.Path(); !errors.Is(err, fetch.ErrClosed) {
				t.Errorf("Path after Close = %v, want ErrClosed", err)
			}
			if _, err := c.Bytes(1 << 20); !errors.Is(err, fetch.ErrClosed) {
				t.Errorf("Bytes after Close = %v, want ErrClosed", err)
			}
			_, statErr := os.Stat(path)
			if name == "local" && statErr != nil {
				t.Errorf("Close removed the original file: %v", statErr)
			}
			if name != "local" && !errors.Is(statErr, os.ErrNotExist) {
				t.Errorf("temp file %s still exists after Close (%v)", path, statErr)
			}
			if got, _ := io.ReadAll(open); !bytesEqual(got, want) {
				t.Errorf("a reader opened before Close read %d bytes, want %d", len(got), len(want))
			}
			if c.SHA256() != sha(want) || c.Size() != int64(len(want)) || len(c.Head()) != fetch.HeadSize {
				t.Errorf("metadata changed after Close")
			}
		})
	}
}

func TestContentBytesLimit(t *testing.T) {
	want := randomBytes(5000, 10)
	for name, c := range kinds(t, want) {
		_, err := c.Bytes(4999)
		var tl *fetch.TooLargeError
		if !errors.As(err, &tl) || *tl != (fetch.TooLargeError{Limit: 4999, Size: 5000}) {
			t.Errorf("%s: Bytes(4999) = %v, want *TooLargeError{4999, 5000}", name, err)
		}
		b, err := c.Bytes(5000)
		if err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0xff // the caller owns the slice
		if again, _ := c.Bytes(5000); !bytesEqual(again, want) {
			t.Errorf("%s: modifying what Bytes returned changed the content", name)
		}
	}
}

func TestFromBytes(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	t.Setenv("TMPPREFIX", "")
	in := []byte("http://example.com/phish")
	c := fetch.FromBytes(in)
	in[0] = 'X' // FromBytes copied
	checkContent(t, c, []byte("http://example.com/phish"))
	path, _ := c.Path()
	if filepath.Dir(path) != tmp || !strings.HasPrefix(filepath.Base(path), fetch.DefaultTempPrefix) {
		t.Errorf("Path() = %s, want %s/%s*", path, tmp, fetch.DefaultTempPrefix)
	}
	c.Close()
	assertEmptyDir(t, tmp)

	empty := fetch.FromBytes(nil)
	checkContent(t, empty, []byte{})
	empty.Close()
}

// TestCloseAfterCallerPanics: a deferred Close still removes the temp file
// when the code using the Content panics.
func TestCloseAfterCallerPanics(t *testing.T) {
	p, dir := testPolicy(t)
	p.MemoryLimit = 10
	for _, uri := range []string{"data:,spilled-to-disk", "data:,x"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			c, err := p.Fetch(t.Context(), uri, "")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Path(); err != nil {
				t.Fatal(err)
			}
			if len(dirEntries(t, dir)) != 1 {
				t.Fatalf("want one temp file in %s", dir)
			}
			panic("scanner bug")
		}()
		assertEmptyDir(t, dir)
	}
}

// panicky panics on its fourth read (by then Fetch has spilled to disk),
// after calling before.
type panicky struct {
	reads  int
	before func()
}

func (p *panicky) Read(b []byte) (int, error) {
	if p.reads++; p.reads > 3 {
		p.before()
		panic("source bug")
	}
	b = b[:min(len(b), 1000)]
	for i := range b {
		b[i] = 'x'
	}
	return len(b), nil
}

// TestFetchPanicLeavesNothing: a source that panics after the spill started
// leaves no temp file behind.
func TestFetchPanicLeavesNothing(t *testing.T) {
	p, dir := testPolicy(t)
	p.MemoryLimit = 10
	var during []string
	func() {
		defer func() {
			if recover() == nil {
				t.Error("no panic")
			}
		}()
		p.FromReader(t.Context(), &panicky{before: func() { during = dirEntries(t, dir) }}, "")
	}()
	if len(during) != 1 {
		t.Errorf("when the source panicked, %s held %v; want the spill file", dir, during)
	}
	assertEmptyDir(t, dir)
}
