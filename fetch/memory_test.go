package fetch_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/polyswarm/psengine/fetch"
)

// allocated returns how many bytes the process allocated while f ran: an
// upper bound on how much the heap could have grown.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestLargeHTTPBodyIsNotHeldInMemory(t *testing.T) {
	const size = 64 << 20
	chunk := randomBytes(64<<10, 12)
	h := sha256.New()
	for range size / len(chunk) {
		h.Write(chunk)
	}
	want := hex.EncodeToString(h.Sum(nil))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("length") {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		} // else chunked: the size is not announced
		for range size / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()

	for _, query := range []string{"", "?length"} {
		p, dir := testPolicy(t)
		p.MemoryLimit = 1 << 20
		p.Client = srv.Client()
		var c *fetch.Content
		var err error
		alloc := allocated(func() { c, err = p.Fetch(t.Context(), srv.URL+query, want) })
		if err != nil {
			t.Fatal(err)
		}
		// The in-memory phase may use up to 2 MiB (growing to the 1 MiB limit);
		// the rest is fixed-size buffers on both ends of the connection.
		if alloc > 8<<20 {
			t.Errorf("GET%s of %d MiB allocated %d MiB; want it streamed to disk", query, size>>20, alloc>>20)
		}
		t.Logf("GET%s of 64 MiB allocated %d KiB", query, alloc>>10)
		path, _ := c.Path()
		if fi, err := os.Stat(path); err != nil || fi.Size() != size || filepath.Dir(path) != dir {
			t.Errorf("spill file %s: %v, %v; want %d bytes in %s", path, fi, err, size, dir)
		}
		c.Close()
		assertEmptyDir(t, dir)
	}
}

func TestLargeDataURIIsStreamed(t *testing.T) {
	payload := randomBytes(4<<20, 13)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
		uri := "data:application/octet-stream;base64," + enc.EncodeToString(payload)
		p, dir := testPolicy(t)
		p.MemoryLimit = 16 << 10
		var c *fetch.Content
		var err error
		alloc := allocated(func() { c, err = p.Fetch(t.Context(), uri, sha(payload)) })
		if err != nil {
			t.Fatal(err)
		}
		if alloc > 512<<10 {
			t.Errorf("a 4 MiB data: URI allocated %d KiB; want it decoded in chunks", alloc>>10)
		}
		c.Close()
		assertEmptyDir(t, dir)
	}
}

func TestLargeLocalFileIsHashedInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	want := randomBytes(32<<20, 14)
	if err := os.WriteFile(path, want, 0o600); err != nil {
		t.Fatal(err)
	}
	p, dir := testPolicy(t)
	var c *fetch.Content
	var err error
	alloc := allocated(func() { c, err = p.Fetch(t.Context(), path, sha(want)) })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if alloc > 1<<20 {
		t.Errorf("hashing a 32 MiB file allocated %d KiB", alloc>>10)
	}
	assertEmptyDir(t, dir)
}
