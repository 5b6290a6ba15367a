package fetch_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/polyswarm/psengine/fetch"
)

// serveBytes answers every GET with body; chunked (no Content-Length) when
// the query has "chunked".
func serveBytes(body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("chunked") {
			for b := body; len(b) > 0; {
				n := min(len(b), 10_000)
				w.Write(b[:n])
				w.(http.Flusher).Flush()
				b = b[n:]
			}
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}
}

func TestFetchSources(t *testing.T) {
	small := randomBytes(1000, 2)
	large := randomBytes(300_000, 3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/large") {
			serveBytes(large)(w, r)
			return
		}
		serveBytes(small)(w, r)
	}))
	defer srv.Close()
	tls := httptest.NewTLSServer(serveBytes(large))
	defer tls.Close()

	tests := []struct {
		name string
		uri  string
		want []byte
	}{
		{"http small", srv.URL + "/small", small},
		{"http small chunked", srv.URL + "/small?chunked", small},
		{"http large", srv.URL + "/large", large},
		{"http large chunked", srv.URL + "/large?chunked", large},
		{"https large", tls.URL + "/x", large},
		{"data small", "data:application/octet-stream;base64," + base64.StdEncoding.EncodeToString(small), small},
		{"data large", "data:application/octet-stream;base64," + base64.StdEncoding.EncodeToString(large), large},
		{"data large url alphabet", "data:;base64," + base64.RawURLEncoding.EncodeToString(large), large},
		{"data percent", "data:,hello%20world", []byte("hello world")},
		{"stdin small", "-", small},
		{"custom small", "mem://bucket/small", small},
		{"custom large", "MEM://bucket/large", large},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, dir := testPolicy(t)
			p.MemoryLimit = 64 << 10
			p.Client = tls.Client() // trusts the TLS server; also fine for plain http
			p.Stdin = strings.NewReader(string(tt.want))
			var opened []string
			p.Openers = map[string]fetch.Opener{"mem": func(ctx context.Context, u *url.URL) (io.ReadCloser, error) {
				opened = append(opened, u.String())
				return io.NopCloser(strings.NewReader(string(tt.want))), nil
			}}
			c, err := p.Fetch(t.Context(), tt.uri, strings.ToUpper(sha(tt.want)))
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			checkContent(t, c, tt.want)
			path, _ := c.Path()
			if filepath.Dir(path) != dir || !strings.HasPrefix(filepath.Base(path), fetch.DefaultTempPrefix) {
				t.Errorf("Path() = %s, want a file named %s* in %s", path, fetch.DefaultTempPrefix, dir)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("temp file mode: %v, %v; want 0600", fi.Mode(), err)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			assertEmptyDir(t, dir)
			if strings.HasPrefix(strings.ToLower(tt.uri), "mem:") && len(opened) != 1 {
				t.Errorf("the Opener ran %d times, want once", len(opened))
			}
		})
	}
}

func TestFetchLocalFileIsNotCopied(t *testing.T) {
	want := randomBytes(200_000, 4)
	dir := t.TempDir()
	path := filepath.Join(dir, "sample.bin")
	if err := os.WriteFile(path, want, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, uri := range []string{path, "sample.bin", "./sample.bin", "file://" + path, "file://localhost" + path, "file:" + path} {
		t.Run(uri, func(t *testing.T) {
			p, tmp := testPolicy(t)
			p.MemoryLimit = 1024
			c, err := p.Fetch(t.Context(), uri, sha(want))
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			defer c.Close()
			checkContent(t, c, want)
			if got, _ := c.Path(); got != path {
				t.Errorf("Path() = %q, want the original %q", got, path)
			}
			assertEmptyDir(t, tmp)
			c.Close()
			if _, err := os.Stat(path); err != nil {
				t.Errorf("Close removed the original file: %v", err)
			}
		})
	}
}

// A local file over the memory limit is read again from disk: every read
// checks it is still the file that was hashed.
func TestFetchLocalFileChanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sample.bin")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("original")
	fetchIt := func() *fetch.Content {
		p := fetch.Local()
		p.MemoryLimit = 4 // "original" is not held in memory
		c, err := p.Fetch(t.Context(), path, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	checkChanged := func(c *fetch.Content, how string) {
		t.Helper()
		if _, err := c.Open(); !errors.Is(err, fetch.ErrChanged) {
			t.Errorf("%s: Open() = %v, want ErrChanged", how, err)
		}
		if _, err := c.Path(); !errors.Is(err, fetch.ErrChanged) {
			t.Errorf("%s: Path() = %v, want ErrChanged", how, err)
		}
		if _, err := c.Bytes(100); !errors.Is(err, fetch.ErrChanged) {
			t.Errorf("%s: Bytes() = %v, want ErrChanged", how, err)
		}
	}

	c := fetchIt()
	write("modified")
	fi, _ := os.Stat(path)
	os.Chtimes(path, fi.ModTime(), fi.ModTime().Add(1e9)) // whatever the clock's resolution
	checkChanged(c, "rewritten")

	c = fetchIt()
	replacement := path + ".new"
	os.WriteFile(replacement, []byte("replaced"), 0o644)
	os.Chtimes(replacement, fi.ModTime(), fi.ModTime())
	os.Rename(replacement, path)
	checkChanged(c, "replaced")

	c = fetchIt()
	os.Remove(path)
	checkChanged(c, "removed")
}

// A local file of at most the memory limit is read once, as it is hashed:
// its bytes stay the ones hashed whatever happens to the file, and Path,
// which hands out the file itself, reports a change.
func TestFetchSmallLocalFileHeldInMemory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sample.bin")
	want := []byte("original")
	for _, how := range []string{"rewritten", "removed"} {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := fetch.Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.Path(); err != nil || got != path {
			t.Errorf("Path() = %q, %v; want the original file %q", got, err, path)
		}
		switch how {
		case "rewritten":
			fi, _ := os.Stat(path)
			if err := os.WriteFile(path, []byte("modified"), 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chtimes(path, fi.ModTime(), fi.ModTime().Add(1e9))
		case "removed":
			os.Remove(path)
		}
		checkHeld := func() {
			t.Helper()
			if got := contentBytes(t, c); !bytesEqual(got, want) {
				t.Errorf("%s: Open() read %q, want the hashed %q", how, got, want)
			}
			if got, err := c.Bytes(100); err != nil || !bytesEqual(got, want) {
				t.Errorf("%s: Bytes() = %q, %v; want the hashed %q", how, got, err, want)
			}
			if got, err := c.View(100); err != nil || !bytesEqual(got, want) {
				t.Errorf("%s: View() = %q, %v; want the hashed %q", how, got, err, want)
			}
		}
		checkHeld()
		if _, err := c.Path(); !errors.Is(err, fetch.ErrChanged) {
			t.Errorf("%s: Path() = %v, want ErrChanged", how, err)
		}
		if c.SHA256() != sha(want) || c.Size() != int64(len(want)) || string(c.Head()) != string(want) {
			t.Errorf("%s: sha %s size %d head %q; want those of %q", how, c.SHA256(), c.Size(), c.Head(), want)
		}
		c.Close()
	}
}

// The memory limit is inclusive: a file of exactly MemoryLimit bytes is held
// in memory, one byte more is read again from disk.
func TestFetchLocalFileMemoryLimit(t *testing.T) {
	dir := t.TempDir()
	for size, held := range map[int]bool{999: true, 1000: true, 1001: false} {
		path := filepath.Join(dir, fmt.Sprint(size))
		want := randomBytes(size, uint64(size))
		if err := os.WriteFile(path, want, 0o600); err != nil {
			t.Fatal(err)
		}
		p := fetch.Local()
		p.MemoryLimit = 1000
		c, err := p.Fetch(t.Context(), path, sha(want))
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(path)
		got, err := c.Bytes(int64(size))
		if held && (err != nil || !bytesEqual(got, want)) {
			t.Errorf("%d bytes: Bytes() after the file was removed = %d bytes, %v; want it held in memory", size, len(got), err)
		}
		if !held && !errors.Is(err, fetch.ErrChanged) {
			t.Errorf("%d bytes: Bytes() after the file was removed = %d bytes, %v; want ErrChanged (read from disk)", size, len(got), err)
		}
		c.Close()
	}
}

func TestFetchFIFOIsStreamed(t *testing.T) {
	want := randomBytes(100_000, 5)
	fifo := filepath.Join(t.TempDir(), "pipe")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		f.Write(want)
	})
	p, dir := testPolicy(t)
	p.MemoryLimit = 10_000
	c, err := p.Fetch(t.Context(), fifo, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	checkContent(t, c, want)
	if path, _ := c.Path(); filepath.Dir(path) != dir {
		t.Errorf("Path() = %s, want a temp file in %s, not the FIFO", path, dir)
	}
}

func TestPolicyAllow(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, []byte("x"), 0o600)
	opener := func(context.Context, *url.URL) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader("from the store")), nil
	}
	tests := []struct {
		name    string
		policy  fetch.Policy
		uri     string
		refused string // "" when allowed; else what the message names
	}{
		{"remote refuses file URIs", fetch.Remote(), "file://" + file, `"file" (local files); this policy allows data, http, https`},
		{"remote refuses paths", fetch.Remote(), file, `"file" (local files)`},
		{"remote refuses stdin", fetch.Remote(), "-", `"stdin" ("-")`},
		{"remote allows data", fetch.Remote(), "data:,x", ""},
		{"local allows files", fetch.Local(), file, ""},
		{"local allows stdin", fetch.Policy{Allow: []string{"STDIN"}, Stdin: strings.NewReader("x")}, "-", ""},
		{"zero policy refuses data", fetch.Policy{}, "data:,x", `"data"; this policy allows nothing`},
		{"unknown scheme", fetch.Local(), "ftp://host/x", `"ftp" (no source for this scheme`},
		{"stdin is not a URI scheme", fetch.Local(), "stdin:x", `"stdin" (no source`},
		{"two-letter scheme is a scheme", fetch.Local(), "ab:c", `"ab"`},
		{"registered opener is allowed", fetch.Policy{Openers: map[string]fetch.Opener{"store": opener}}, "store://b/k", ""},
		{"opener does not allow other schemes", fetch.Policy{Openers: map[string]fetch.Opener{"store": opener}}, "data:,x", `"data"; this policy allows store`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.policy.Fetch(t.Context(), tt.uri, "")
			if tt.refused == "" {
				if err != nil {
					t.Fatalf("Fetch(%q) = %v, want it allowed", tt.uri, err)
				}
				c.Close()
				return
			}
			if !errors.Is(err, fetch.ErrNotAllowed) || !strings.Contains(err.Error(), tt.refused) {
				t.Fatalf("Fetch(%q) = %v, want ErrNotAllowed naming %s", tt.uri, err, tt.refused)
			}
			assertOneLine(t, err)
		})
	}
}

func TestPolicyInvalid(t *testing.T) {
	op := func(context.Context, *url.URL) (io.ReadCloser, error) { return nil, nil }
	for _, p := range []fetch.Policy{
		{MaxSize: -1},
		{MemoryLimit: -1},
		{Openers: map[string]fetch.Opener{"http": op}},
		{Openers: map[string]fetch.Opener{"S3": op}},
		{Openers: map[string]fetch.Opener{"s 3": op}},
		{Openers: map[string]fetch.Opener{"s3": nil}},
	} {
		if _, err := p.Fetch(t.Context(), "data:,x", ""); !errors.Is(err, fetch.ErrBadPolicy) {
			t.Errorf("Fetch with %+v = %v, want ErrBadPolicy", p, err)
		}
	}
}

func TestFetchMalformed(t *testing.T) {
	for _, uri := range []string{
		"", "file://otherhost/etc/passwd", "file:relative", "file:///x?y", "file:///x#y", "http:///nohost",
		"http://[::1", "data:nocomma", "data:;base64,Q",
	} {
		_, err := fetch.Local().Fetch(t.Context(), uri, "")
		if !errors.Is(err, fetch.ErrMalformedURI) {
			t.Errorf("Fetch(%q) = %v, want ErrMalformedURI", uri, err)
		}
		assertOneLine(t, err)
	}
}

func TestFetchUnreachable(t *testing.T) {
	dir := t.TempDir()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, uri := range []string{filepath.Join(dir, "missing"), dir, `C:\x`, closed.URL + "/x"} {
		_, err := fetch.Open(t.Context(), uri)
		if !errors.Is(err, fetch.ErrUnreachable) {
			t.Errorf("Fetch(%q) = %v, want ErrUnreachable", uri, err)
		}
		assertOneLine(t, err)
	}
	if _, err := fetch.Open(t.Context(), filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want it to wrap fs.ErrNotExist", err)
	}
}

func TestFetchHTTPStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusNotFound)
	}))
	defer srv.Close()
	p := fetch.Remote()
	p.Client = srv.Client()
	_, err := p.Fetch(t.Context(), srv.URL+"/a/b?X-Amz-Signature=secret", "")
	var se *fetch.StatusError
	if !errors.As(err, &se) || se.Code != 404 || !errors.Is(err, fetch.ErrUnreachable) {
		t.Fatalf("Fetch = %v, want a *StatusError 404 matching ErrUnreachable", err)
	}
	if want := "fetch: GET " + srv.URL + "/a/b?...: HTTP 404 Not Found"; err.Error() != want {
		t.Errorf("message = %q, want %q (query redacted)", err, want)
	}
}

func TestFetchHTTPRedirects(t *testing.T) {
	target := httptest.NewServer(serveBytes([]byte("landed")))
	defer target.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		to := target.URL
		if r.URL.Path == "/to-https" {
			to = strings.Replace(target.URL, "http:", "https:", 1)
		}
		http.Redirect(w, r, to, http.StatusFound)
	}))
	defer srv.Close()
	p := fetch.Policy{Allow: []string{"http"}, Client: srv.Client()}
	c, err := p.Fetch(t.Context(), srv.URL+"/to-http", sha([]byte("landed")))
	if err != nil {
		t.Fatalf("allowed redirect: %v", err)
	}
	c.Close()
	_, err = p.Fetch(t.Context(), srv.URL+"/to-https", "")
	if !errors.Is(err, fetch.ErrNotAllowed) || !strings.Contains(err.Error(), `redirects to scheme "https"`) {
		t.Errorf("redirect to a refused scheme: %v, want ErrNotAllowed naming https", err)
	}
}

// endless is an unbounded source that counts what was read from it.
type endless struct{ read int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(e.read + int64(i))
	}
	e.read += int64(len(p))
	return len(p), nil
}

func TestFetchTooLarge(t *testing.T) {
	const max = 100_000
	body := randomBytes(max+1, 6)
	srv := httptest.NewServer(serveBytes(body))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "big")
	os.WriteFile(file, body, 0o600)

	for _, memLimit := range []int64{1000, max, 10 * max} {
		t.Run(fmt.Sprint("memory limit ", memLimit), func(t *testing.T) {
			p, dir := testPolicy(t)
			p.MaxSize, p.MemoryLimit = max, memLimit
			src := &endless{}
			p.Openers = map[string]fetch.Opener{"endless": func(context.Context, *url.URL) (io.ReadCloser, error) {
				return io.NopCloser(src), nil
			}}
			tests := []struct {
				uri  string
				size int64 // TooLargeError.Size
			}{
				{srv.URL, max + 1}, // announced by Content-Length
				{srv.URL + "?chunked", -1},
				{file, max + 1},
				{"data:;base64," + base64.StdEncoding.EncodeToString(body), max + 1},
				{"data:;base64," + base64.RawURLEncoding.EncodeToString(body), max + 1},
				{"endless://x", -1},
				{"-", -1},
			}
			for _, tt := range tests {
				p.Stdin = strings.NewReader(string(body))
				_, err := p.Fetch(t.Context(), tt.uri, "")
				var tl *fetch.TooLargeError
				if !errors.As(err, &tl) || !errors.Is(err, fetch.ErrTooLarge) || *tl != (fetch.TooLargeError{Limit: max, Size: tt.size}) {
					t.Errorf("Fetch(%.60s) = %v, want *TooLargeError{%d, %d}", tt.uri, err, max, tt.size)
				}
				assertOneLine(t, err)
			}
			if src.read != max+1 {
				t.Errorf("read %d bytes from an endless source, want exactly MaxSize+1 = %d", src.read, max+1)
			}
			assertEmptyDir(t, dir)

			// Exactly MaxSize is fine.
			p.Stdin = strings.NewReader(string(body[:max]))
			c, err := p.Fetch(t.Context(), "-", sha(body[:max]))
			if err != nil {
				t.Fatalf("content of exactly MaxSize: %v", err)
			}
			checkContent(t, c, body[:max])
			c.Close()
		})
	}
	if msg := (&fetch.TooLargeError{Limit: 2 << 30, Size: -1}).Error(); msg != "fetch: content too large: over the limit of 2147483648 bytes (2 GiB)" {
		t.Errorf("message %q", msg)
	}
}

func TestFetchChecksum(t *testing.T) {
	p, dir := testPolicy(t)
	p.MemoryLimit = 10
	uri := "data:,0123456789abcdef"
	want := sha([]byte("0123456789abcdef"))
	_, err := p.Fetch(t.Context(), uri, strings.Repeat("0", 64))
	var ce *fetch.ChecksumError
	if !errors.As(err, &ce) || !errors.Is(err, fetch.ErrChecksum) {
		t.Fatalf("Fetch = %v, want *ChecksumError", err)
	}
	if diff := cmp.Diff(fetch.ChecksumError{Want: strings.Repeat("0", 64), Got: want}, *ce); diff != "" {
		t.Errorf("ChecksumError (-want +got):\n%s", diff)
	}
	if msg := "fetch: checksum mismatch: want sha256 " + strings.Repeat("0", 64) + ", got " + want; err.Error() != msg {
		t.Errorf("message %q, want %q", err, msg)
	}
	assertEmptyDir(t, dir) // the spilled file was removed
}

func TestFetchOpenerErrors(t *testing.T) {
	boom := errors.New("boom")
	var closes int
	type closer struct {
		io.Reader
		io.Closer
	}
	counted := func(r io.Reader) io.ReadCloser {
		return closer{r, closerFunc(func() error { closes++; return nil })}
	}
	tests := []struct {
		name string
		open fetch.Opener
		kind error
	}{
		{"open error", func(context.Context, *url.URL) (io.ReadCloser, error) { return nil, boom }, fetch.ErrUnreachable},
		{"classified open error", func(context.Context, *url.URL) (io.ReadCloser, error) {
			return nil, fmt.Errorf("%w: bucket is private", fetch.ErrNotAllowed)
		}, fetch.ErrNotAllowed},
		{"no reader", func(context.Context, *url.URL) (io.ReadCloser, error) { return nil, nil }, fetch.ErrUnreachable},
		{"read error after spilling", func(context.Context, *url.URL) (io.ReadCloser, error) {
			return counted(io.MultiReader(strings.NewReader(strings.Repeat("x", 5000)), errReader{boom})), nil
		}, fetch.ErrUnreachable},
		{"no progress", func(context.Context, *url.URL) (io.ReadCloser, error) {
			return counted(errReader{nil}), nil
		}, fetch.ErrUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, dir := testPolicy(t)
			p.MemoryLimit = 1000
			p.Openers = map[string]fetch.Opener{"s3": tt.open}
			closes = 0
			_, err := p.Fetch(t.Context(), "s3://bucket/key?token=secret", "")
			if !errors.Is(err, tt.kind) {
				t.Fatalf("Fetch = %v, want %v", err, tt.kind)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("message %q leaks the query", err)
			}
			assertOneLine(t, err)
			assertEmptyDir(t, dir)
			if (tt.name == "read error after spilling" || tt.name == "no progress") && closes != 1 {
				t.Errorf("reader closed %d times, want 1", closes)
			}
		})
	}
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// errReader returns err from every Read (or 0, nil forever when err is nil).
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestTempPrefixAndDir(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	t.Setenv("TMPPREFIX", "/tmp/zsh")
	p := fetch.Local()
	p.MemoryLimit = 1
	c, err := p.Fetch(t.Context(), "data:,spilled", "")
	if err != nil {
		t.Fatal(err)
	}
	path, _ := c.Path()
	if filepath.Dir(path) != tmp || !strings.HasPrefix(filepath.Base(path), "zsh") {
		t.Errorf("Path() = %s, want %s/zsh*", path, tmp)
	}
	c.Close()

	p.TempPrefix = "engine-"
	c, err = p.Fetch(t.Context(), "data:,spilled", "")
	if err != nil {
		t.Fatal(err)
	}
	if path, _ := c.Path(); !strings.HasPrefix(filepath.Base(path), "engine-") {
		t.Errorf("Path() = %s, want engine-*", path)
	}
	c.Close()
	assertEmptyDir(t, tmp)
}

func TestFromReader(t *testing.T) {
	want := randomBytes(70_000, 7)
	p, dir := testPolicy(t)
	p.MemoryLimit = 4096
	c, err := p.FromReader(t.Context(), strings.NewReader(string(want)), sha(want))
	if err != nil {
		t.Fatal(err)
	}
	checkContent(t, c, want)
	c.Close()
	if _, err := p.FromReader(t.Context(), strings.NewReader("x"), sha(want)); !errors.Is(err, fetch.ErrChecksum) {
		t.Errorf("FromReader with the wrong checksum = %v, want ErrChecksum", err)
	}
	assertEmptyDir(t, dir)
}

func TestTempDirUnusable(t *testing.T) {
	p := fetch.Local()
	p.TempDir = filepath.Join(t.TempDir(), "missing")
	p.MemoryLimit = 1
	_, err := p.Fetch(t.Context(), "data:,needs-a-temp-file", "")
	if !errors.Is(err, fetch.ErrUnreachable) || !strings.Contains(err.Error(), "creating temp file") {
		t.Errorf("spilling into a missing TempDir: %v, want ErrUnreachable", err)
	}
	p.MemoryLimit = 0
	c, err := p.Fetch(t.Context(), "data:,in-memory", "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Path(); !errors.Is(err, fetch.ErrUnreachable) {
		t.Errorf("Path into a missing TempDir: %v, want ErrUnreachable", err)
	}
}
