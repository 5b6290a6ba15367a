package fetch_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/polyswarm/psengine/fetch"
)

// testPolicy is Local() writing temp files to a fresh directory, returned too.
func testPolicy(t testing.TB) (fetch.Policy, string) {
	t.Helper()
	dir := t.TempDir()
	p := fetch.Local()
	p.TempDir = dir
	return p, dir
}

// randomBytes returns n deterministic pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// contentBytes reads c through Open and fails the test on error.
func contentBytes(t testing.TB, c *fetch.Content) []byte {
	t.Helper()
	r, err := c.Open()
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading content: %v", err)
	}
	return b
}

// checkContent verifies every view of c against want.
func checkContent(t testing.TB, c *fetch.Content, want []byte) {
	t.Helper()
	if got := c.SHA256(); got != sha(want) {
		t.Errorf("SHA256() = %s, want %s", got, sha(want))
	}
	if got := c.Size(); got != int64(len(want)) {
		t.Errorf("Size() = %d, want %d", got, len(want))
	}
	if diff := cmp.Diff(want[:min(len(want), fetch.HeadSize)], c.Head()); diff != "" {
		t.Errorf("Head() (-want +got):\n%.300s", diff)
	}
	if got := contentBytes(t, c); !bytesEqual(got, want) {
		t.Errorf("Open() read %d bytes (sha %s), want %d (sha %s)", len(got), sha(got), len(want), sha(want))
	}
	got, err := c.Bytes(int64(len(want)))
	if err != nil || !bytesEqual(got, want) {
		t.Errorf("Bytes() = %d bytes, %v; want the content", len(got), err)
	}
	path, err := c.Path()
	if err != nil {
		t.Fatalf("Path: %v", err)
	}
	onDisk, err := os.ReadFile(path)
	if err != nil || !bytesEqual(onDisk, want) {
		t.Errorf("file at Path() %s: %d bytes, %v; want the content", path, len(onDisk), err)
	}
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// dirEntries lists the names in dir.
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func assertEmptyDir(t testing.TB, dir string) {
	t.Helper()
	if names := dirEntries(t, dir); len(names) > 0 {
		t.Errorf("%s holds %d leftover files: %v", dir, len(names), names[:min(len(names), 10)])
	}
}

func assertOneLine(t testing.TB, err error) {
	t.Helper()
	if err != nil && strings.ContainsAny(err.Error(), "\r\n") {
		t.Errorf("error message is not one line: %q", err.Error())
	}
}
