package fetch_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/polyswarm/psengine/fetch"
)

// TestThousandFetchesLeaveNothingBehind mixes successes with every kind of
// failure, in a fresh TMPDIR, and checks that nothing is left in it.
func TestThousandFetchesLeaveNothingBehind(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	t.Setenv("TMPPREFIX", "")

	started := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok", "/big":
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			if r.URL.Path == "/ok" {
				w.Header().Set("Content-Length", strconv.Itoa(n))
			}
			w.Write(randomBytes(n, uint64(n)))
		case "/stall": // some body, then nothing until the client gives up
			w.Write(randomBytes(20_000, 1))
			w.(http.Flusher).Flush()
			started <- struct{}{}
			<-r.Context().Done()
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	p := fetch.Local()
	p.MemoryLimit = 4096 // most content spills to a temp file
	p.MaxSize = 100_000
	p.Client = srv.Client()
	p.Openers = map[string]fetch.Opener{"panic": func(context.Context, *url.URL) (io.ReadCloser, error) {
		return io.NopCloser(&panicky{before: func() {}}), nil
	}}

	outcomes := map[string]int{}
	for i := range 1000 {
		n := 5000 + i*37
		body := randomBytes(n, uint64(n))
		outcome := func() (result string) {
			ctx := t.Context()
			uri, want := fmt.Sprintf("%s/ok?n=%d", srv.URL, n), sha(body)
			switch i % 8 {
			case 1:
				want = strings.Repeat("f", 64)
			case 2:
				uri = fmt.Sprintf("%s/big?n=%d", srv.URL, 100_001+i)
			case 3:
				uri = srv.URL + "/missing"
			case 4:
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
				uri = srv.URL + "/stall"
				go func() {
					<-started
					cancel()
				}()
			case 5:
				uri = "data:;base64," + base64.RawURLEncoding.EncodeToString(body)
			case 6: // the source panics mid-read
				defer func() {
					if recover() != nil {
						result = "source panicked"
					}
				}()
				p.Fetch(ctx, "panic://x", "")
				return "no panic"
			case 7: // success, then the caller panics with a deferred Close
				defer func() {
					if recover() != nil {
						result = "caller panicked"
					}
				}()
				c, err := p.Fetch(ctx, uri, want)
				if err != nil {
					return err.Error()
				}
				defer c.Close()
				c.Path()
				panic("caller bug")
			}
			c, err := p.Fetch(ctx, uri, want)
			switch {
			case errors.Is(err, fetch.ErrChecksum):
				return "checksum"
			case errors.Is(err, fetch.ErrTooLarge):
				return "too large"
			case errors.Is(err, fetch.ErrUnreachable):
				return "unreachable"
			case errors.Is(err, context.Canceled):
				return "cancelled"
			case err != nil:
				return err.Error()
			}
			defer c.Close()
			path, err := c.Path()
			if err != nil {
				return err.Error()
			}
			if filepath.Dir(path) != tmp || !strings.HasPrefix(filepath.Base(path), fetch.DefaultTempPrefix) {
				return "temp file in the wrong place: " + path
			}
			if got, _ := os.ReadFile(path); !bytesEqual(got, body) {
				return "wrong content"
			}
			return "ok"
		}()
		outcomes[outcome]++
	}
	want := map[string]int{"ok": 250, "checksum": 125, "too large": 125, "unreachable": 125, "cancelled": 125,
		"source panicked": 125, "caller panicked": 125}
	if diff := cmp.Diff(want, outcomes); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	assertEmptyDir(t, tmp)
}
