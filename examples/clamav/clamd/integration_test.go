package clamd_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyswarm/psengine/examples/clamav/clamd"
	"github.com/polyswarm/psengine/examples/clamav/internal/clamdtest"
	"github.com/polyswarm/psengine/psenginetest"
)

// The client against a real clamd, over its unix socket and over TCP.
func TestRealClamd(t *testing.T) {
	cfg := clamdtest.StandardSignatures(t)
	generated := randomBytes(3000)
	cfg.Hashes["PsTest.Generated"] = generated
	cfg.StreamMaxLength = "1M"
	cfg.TCP = true
	d := clamdtest.StartDaemon(t, cfg)

	dir := t.TempDir()
	files := map[string][]byte{"eicar": psenginetest.EICAR(), "generated": generated, "clean": []byte("nothing to see here\n")}
	var paths []string
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	clamExe := filepath.Join(clamdtest.TestfilesDir, "clam.exe")
	ref := d.Reference(t, append(paths, clamExe)...)
	want := map[string]clamd.Reply{
		"eicar":     {Name: "stream", Status: clamd.StatusFound, Signature: ref[filepath.Join(dir, "eicar")]},
		"generated": {Name: "stream", Status: clamd.StatusFound, Signature: ref[filepath.Join(dir, "generated")]},
		"clean":     {Name: "stream", Status: clamd.StatusOK},
	}
	for _, sig := range []string{want["eicar"].Signature, want["generated"].Signature} {
		if sig == "" {
			t.Fatalf("clamscan does not detect the test's own samples: %v", ref)
		}
	}
	clamExeData, err := os.ReadFile(clamExe)
	if err != nil {
		t.Fatal(err)
	}
	files["clam.exe"] = clamExeData
	want["clam.exe"] = clamd.Reply{Name: "stream", Status: clamd.StatusFound, Signature: ref[clamExe]}

	for _, addr := range []clamd.Address{d.Address, d.TCP} {
		t.Run(addr.Network, func(t *testing.T) {
			ctx := context.Background()
			c := dial(t, addr)
			v, err := c.Version(ctx)
			if err != nil {
				t.Fatalf("Version: %v", err)
			}
			if v.Engine == "" || !strings.HasPrefix(v.Raw, "ClamAV "+v.Engine) {
				t.Errorf("Version = %+v", v)
			}
			if err := c.Ping(ctx); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			for round := range 2 { // the session serves every scan
				for name, data := range files {
					got, err := c.InStream(ctx, bytes.NewReader(data))
					if err != nil {
						t.Fatalf("round %d, %s: %v", round, name, err)
					}
					if got != want[name] {
						t.Errorf("round %d, %s: %+v, want %+v", round, name, got, want[name])
					}
				}
			}
			// Over StreamMaxLength: clamd answers and closes the connection.
			_, err = c.InStream(ctx, bytes.NewReader(make([]byte, 3<<20)))
			if !errors.Is(err, clamd.ErrSizeLimit) {
				t.Fatalf("3 MiB over a 1M StreamMaxLength: %v, want ErrSizeLimit", err)
			}
			if c.Err() == nil {
				t.Error("connection usable after the size-limit reply")
			}
		})
	}
}

// A clamd killed while a connection is open: the next command fails with
// ErrConnection, and dialling again fails with ErrUnreachable.
func TestRealClamdDies(t *testing.T) {
	d := clamdtest.StartDaemon(t, clamdtest.StandardSignatures(t))
	c := dial(t, d.Address)
	ctx := context.Background()
	if _, err := c.InStream(ctx, bytes.NewReader(psenginetest.EICAR())); err != nil {
		t.Fatal(err)
	}
	d.Kill(t)
	if _, err := c.InStream(ctx, bytes.NewReader(psenginetest.EICAR())); !errors.Is(err, clamd.ErrConnection) {
		t.Errorf("scan after clamd died: %v, want ErrConnection", err)
	}
	if _, err := clamd.Dial(ctx, d.Address); !errors.Is(err, clamd.ErrUnreachable) {
		t.Errorf("dial after clamd died: %v, want ErrUnreachable", err)
	}
}
