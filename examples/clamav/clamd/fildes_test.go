//go:build unix

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

// Descriptor passing against a real clamd: a file, the same file again on
// the same session, a file already unlinked (clamd could not open it by its
// path), a file whose offset is not at its start, and a file larger than
// StreamMaxLength (which binds streams only). On TCP, ScanFD refuses at
// once and the session stays usable.
func TestRealClamdScanFD(t *testing.T) {
	cfg := clamdtest.StandardSignatures(t)
	cfg.StreamMaxLength = "1M"
	cfg.TCP = true
	d := clamdtest.StartDaemon(t, cfg)
	dir := t.TempDir()
	eicarPath := filepath.Join(dir, "eicar.com")
	if err := os.WriteFile(eicarPath, psenginetest.EICAR(), 0o600); err != nil {
		t.Fatal(err)
	}
	wantSig := d.Reference(t, eicarPath)[eicarPath]
	if wantSig == "" {
		t.Fatal("clamscan does not detect EICAR on the test database")
	}
	ctx := context.Background()
	c := dial(t, d.Address)
	if !c.CanPassFD() {
		t.Fatal("a unix socket connection cannot pass descriptors")
	}
	scan := func(what string, f *os.File) clamd.Reply {
		t.Helper()
		defer f.Close()
		rep, err := c.ScanFD(ctx, f)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !strings.HasPrefix(rep.Name, "fd[") {
			t.Errorf("%s: reply names %q, want fd[N]", what, rep.Name)
		}
		return rep
	}
	open := func(p string) *os.File {
		t.Helper()
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	for round := range 2 {
		if rep := scan("eicar", open(eicarPath)); rep.Status != clamd.StatusFound || rep.Signature != wantSig {
			t.Errorf("round %d: eicar: %+v, want FOUND %s", round, rep, wantSig)
		}
	}

	unlinked := filepath.Join(dir, "unlinked")
	if err := os.WriteFile(unlinked, psenginetest.EICAR(), 0o600); err != nil {
		t.Fatal(err)
	}
	f := open(unlinked)
	if err := os.Remove(unlinked); err != nil {
		t.Fatal(err)
	}
	if rep := scan("unlinked", f); rep.Status != clamd.StatusFound {
		t.Errorf("unlinked file: %+v, want FOUND", rep)
	}

	f = open(eicarPath)
	if _, err := f.Seek(20, 0); err != nil {
		t.Fatal(err)
	}
	if rep := scan("offset 20", f); rep.Status != clamd.StatusFound {
		t.Errorf("file read past its start: %+v, want FOUND (clamd reads from the start)", rep)
	}

	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, append(bytes.Repeat([]byte{'x'}, 3<<20), psenginetest.EICAR()...), 0o600); err != nil {
		t.Fatal(err)
	}
	if rep := scan("3 MiB", open(big)); rep.Status != clamd.StatusFound {
		t.Errorf("3 MiB over a 1M StreamMaxLength: %+v, want FOUND (the limit binds streams)", rep)
	}
	if c.Err() != nil {
		t.Errorf("session unusable after the scans: %v", c.Err())
	}

	tc := dial(t, d.TCP)
	if tc.CanPassFD() {
		t.Error("a TCP connection claims to pass descriptors")
	}
	if _, err := tc.ScanFD(ctx, open(eicarPath)); !errors.Is(err, clamd.ErrNoFDPassing) {
		t.Errorf("ScanFD on TCP: %v, want ErrNoFDPassing", err)
	}
	if err := tc.Ping(ctx); err != nil {
		t.Errorf("TCP session after the refused ScanFD: %v", err)
	}
}

// A closed file sends nothing: the error says so and the session goes on.
func TestScanFDClosedFile(t *testing.T) {
	fake := clamdtest.StartFake(t, clamdtest.FakeConfig{Signatures: map[string][]byte{"Fake.Eicar": psenginetest.EICAR()}})
	c := dial(t, fake.Address)
	f, err := os.Open(filepath.Join(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	ctx := context.Background()
	if _, err := c.ScanFD(ctx, f); err == nil || !strings.Contains(err.Error(), "closed file") {
		t.Errorf("ScanFD of a closed file: %v, want an error saying it is closed", err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Errorf("session after the closed file: %v", err)
	}
	p := psenginetest.File(t, "eicar.com", psenginetest.EICAR())
	g, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if rep, err := c.ScanFD(ctx, g); err != nil || rep.Signature != "Fake.Eicar" {
		t.Errorf("ScanFD after the closed file: %+v, %v", rep, err)
	}
}
