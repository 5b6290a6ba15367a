package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/examples/clamav/clamd"
	"github.com/polyswarm/psengine/examples/clamav/engine"
	"github.com/polyswarm/psengine/examples/clamav/internal/clamdtest"
	"github.com/polyswarm/psengine/psenginetest"
)

// Update with a fake clamd: RELOAD sent, the new VERSION in the head and
// in the answers of workers connected before the reload; an unchanged
// VERSION after ReloadWait is no failure; a clamd that cannot be reached is
// one, and the head stays.
func TestUpdateWithFake(t *testing.T) {
	ctx := context.Background()
	fake := clamdtest.StartFake(t, clamdtest.FakeConfig{Signatures: fakeSigs,
		Version: "ClamAV 1.4.6/42/Thu Jan  1 00:00:00 2025", ReloadVersion: "ClamAV 1.4.6/43/Fri Jan  2 00:00:00 2025"})
	e := newEngine(t, engine.Scanner{Address: fake.Address.String()}, psengine.WithWorkers(1))
	if a := psenginetest.Analyze(t, e, psenginetest.EICAR()).Analysis; a.Metadata.Scanner.SignaturesVersion != "42" {
		t.Fatalf("before the update: signatures_version %q, want 42", a.Metadata.Scanner.SignaturesVersion)
	}
	if err := e.Update(ctx); err != nil {
		t.Fatal(err)
	}
	if fake.Reloads() != 1 {
		t.Errorf("%d RELOADs, want 1", fake.Reloads())
	}
	if v := e.Env().Head().Scanner.SignaturesVersion; v != "43" {
		t.Errorf("head after the update: signatures_version %q, want 43", v)
	}
	// The worker's connection (made before the reload) still serves, and
	// its answers carry the new version.
	a := psenginetest.Analyze(t, e, psenginetest.EICAR()).Analysis
	if a.Verdict != psengine.Malicious || a.Metadata.Scanner.SignaturesVersion != "43" {
		t.Errorf("after the update: %s, signatures_version %q; want malicious, 43", a.Verdict, a.Metadata.Scanner.SignaturesVersion)
	}

	// A database whose VERSION does not change: waited for, no failure.
	same := clamdtest.StartFake(t, clamdtest.FakeConfig{Signatures: fakeSigs})
	e2 := newEngine(t, engine.Scanner{Address: same.Address.String(), ReloadWait: 150 * time.Millisecond})
	if err := e2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := e2.Update(ctx); err != nil {
		t.Fatalf("an unchanged version: %v", err)
	}
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Errorf("Update returned after %v, before ReloadWait", took)
	}
	if v := e2.Env().Head().Scanner.SignaturesVersion; v != "42" || same.Reloads() != 1 {
		t.Errorf("head %q, %d reloads", v, same.Reloads())
	}

	// clamd gone: an error, the head stays.
	same.Close()
	if err := e2.Update(ctx); !errors.Is(err, clamd.ErrUnreachable) {
		t.Errorf("Update with clamd gone: %v, want ErrUnreachable", err)
	}
	if v := e2.Env().Head().Scanner.SignaturesVersion; v != "42" {
		t.Errorf("head after a failed update: %q, want 42", v)
	}
}

// Readiness is clamd answering PING.
func TestCheckHealthWithFake(t *testing.T) {
	ctx := context.Background()
	fake := clamdtest.StartFake(t, clamdtest.FakeConfig{})
	s := engine.Scanner{Address: fake.Address.String()}
	env, err := s.SetupEngine(ctx, psengine.Env{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckHealth(ctx, env); err != nil {
		t.Errorf("clamd answering: %v", err)
	}
	fake.Close()
	if err := s.CheckHealth(ctx, env); !errors.Is(err, clamd.ErrUnreachable) {
		t.Errorf("clamd gone: %v, want ErrUnreachable", err)
	}
}

// A real clamd: new signatures in a .cud database of a new version are
// picked up by Update (head and answers), and a database that does not
// load leaves the previous one detecting (clamd keeps it; the version
// stays).
func TestRealClamdUpdate(t *testing.T) {
	ctx := context.Background()
	cfg := clamdtest.StandardSignatures(t)
	cfg.CVDVersion = 42
	d := clamdtest.StartDaemon(t, cfg)
	e := newEngine(t, engine.Scanner{Address: d.Address.String(), ReloadWait: 500 * time.Millisecond})
	marker := []byte("PSENGINE-NEW-SIGNATURE-MARKER")
	if a := psenginetest.Analyze(t, e, marker).Analysis; a.Verdict != psengine.Benign || a.Metadata.Scanner.SignaturesVersion != "42" {
		t.Fatalf("before the update: %s, signatures_version %q", a.Verdict, a.Metadata.Scanner.SignaturesVersion)
	}

	next := clamdtest.StandardSignatures(t)
	next.Bodies["PsTest.NewMarker"] = marker
	next.CVDVersion = 43
	d.ReplaceDatabase(t, next)
	if err := e.Update(ctx); err != nil {
		t.Fatal(err)
	}
	if v := e.Env().Head().Scanner.SignaturesVersion; v != "43" {
		t.Fatalf("head after the update: %q, want 43", v)
	}
	a := psenginetest.Analyze(t, e, marker).Analysis
	if a.Verdict != psengine.Malicious || a.Metadata.Scanner.SignaturesVersion != "43" {
		t.Fatalf("after the update: %s %q, signatures_version %q", a.Verdict, a.Metadata.MalwareFamily, a.Metadata.Scanner.SignaturesVersion)
	}

	// A malformed database file: clamd refuses the reload and keeps the
	// previous databases.
	if err := os.WriteFile(filepath.Join(d.DBDir, "broken.ndb"), []byte("Broken:zz:not-a-signature\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.Update(ctx); err != nil {
		t.Fatalf("update with a database clamd refuses: %v", err)
	}
	if v := e.Env().Head().Scanner.SignaturesVersion; v != "43" {
		t.Errorf("head after a refused reload: %q, want 43", v)
	}
	if a := psenginetest.Analyze(t, e, marker).Analysis; a.Verdict != psengine.Malicious {
		t.Errorf("after a refused reload: %s, want malicious (the previous databases)", a.Verdict)
	}
	if err := e.Ready(ctx); err != nil {
		t.Errorf("Ready: %v", err)
	}
}
