package natscli_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/polyswarm/psengine/natsq/embedded"
	"github.com/polyswarm/psengine/psenginetest"
)

// A worker refuses an artifact on loopback unless it runs with
// --nats-allow-private.
func TestWorkerAllowPrivateFlag(t *testing.T) {
	srv, err := embedded.Start(embedded.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	body := psenginetest.EICAR()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }))
	defer web.Close()
	artifact := web.URL + "/eicar.com"

	for _, tc := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"default", nil, artifact + ": unknown SKIPPED:CANNOT-FETCH\n"},
		{"allow-private", []string{"--nats-allow-private"}, artifact + ": malicious EICAR-Test-File bid=953125000000000000\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := "private-" + tc.name
			w, _, werr := program(t, "")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			workerDone := make(chan int, 1)
			go func() {
				args := append([]string{"worker", "--backend", "nats", "--nats-url", srv.ClientURL(), "--nats-prefix", prefix, "--workers", "1"}, tc.flags...)
				workerDone <- w.Run(ctx, args)
			}()

			a, out, aerr := program(t, "")
			code := a.Run(context.Background(), []string{"analyze", "--backend", "nats", "--nats-url", srv.ClientURL(), "--nats-prefix", prefix, artifact})
			if code != 0 {
				t.Errorf("analyze exit %d; stderr:\n%s", code, aerr.String())
			}
			if diff := cmp.Diff(tc.want, out.String()); diff != "" {
				t.Errorf("analyze output (-want +got):\n%s", diff)
			}
			cancel()
			if code := <-workerDone; code != 0 {
				t.Errorf("worker exit %d; stderr:\n%s", code, werr.String())
			}
			warned := strings.Contains(werr.String(), "bounties may reference artifacts and response URLs on private addresses")
			if warned != (tc.flags != nil) {
				t.Errorf("worker warned about private addresses: %v, want %v; stderr:\n%s", warned, tc.flags != nil, werr.String())
			}
		})
	}
}

// Submitters do not fetch: --nats-allow-private is refused there rather
// than silently ignored.
func TestAllowPrivateIsForWorkersOnly(t *testing.T) {
	for _, args := range [][]string{
		{"analyze", "--backend", "nats", "--nats-allow-private", "--nats-embedded", t.TempDir(), psenginetest.DataURI([]byte("x"))},
		{"webhook", "--backend", "nats", "--nats-allow-private", "--nats-embedded", t.TempDir(), "--insecure", "-p", "0"},
	} {
		p, out, errs := program(t, "")
		if code := p.Run(context.Background(), args); code != 1 {
			t.Errorf("%q: exit %d, want 1; stderr:\n%s", args, code, errs.String())
		}
		if !strings.Contains(errs.String(), "--nats-allow-private applies to the worker command only") {
			t.Errorf("%q: stderr does not say why:\n%s", args, errs.String())
		}
		if strings.Contains(out.String(), "listening") {
			t.Errorf("%q: started anyway:\n%s", args, out.String())
		}
	}
}
