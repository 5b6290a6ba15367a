package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/examples/clamav/clamd"
	"github.com/polyswarm/psengine/examples/clamav/database"
	"github.com/polyswarm/psengine/examples/clamav/engine"
	"github.com/polyswarm/psengine/examples/clamav/internal/clamdtest"
	"github.com/polyswarm/psengine/psenginetest"
)

// Update with a fake clamd: RELOAD sent, the new VERSION in the head and
// in the answers of workers connected before the reload; without a
// database directory every update reloads and none waits; a clamd that
// cannot be reached is an error, and the head stays.
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

	// No database directory: each update reloads, and returns at once
	// (there is nothing to wait for).
	same := clamdtest.StartFake(t, clamdtest.FakeConfig{Signatures: fakeSigs})
	e2 := newEngine(t, engine.Scanner{Address: same.Address.String(), ReloadWait: time.Hour})
	if err := e2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := e2.Update(ctx); err != nil {
			t.Fatalf("an unchanged version: %v", err)
		}
	}
	if v := e2.Env().Head().Scanner.SignaturesVersion; v != "42" || same.Reloads() != 2 {
		t.Errorf("head %q, %d reloads; want 42, 2", v, same.Reloads())
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

// cvdHeader is the 512-byte header of a CVD container of that version.
func cvdHeader(version int) []byte {
	h := fmt.Sprintf("ClamAV-VDB:01 Jan 2025 00-00 +0000:%d:1:216:00000000000000000000000000000000:X:psengine:0", version)
	return []byte(h + strings.Repeat(" ", 512-len(h)))
}

// With a database directory (its check passed by a stand-in clamscan): an
// unchanged directory is no reload; a changed one is, and Update returns
// as soon as VERSION names the directory's daily version; a clamd whose
// VERSION never does fails the update after ReloadWait, with
// ErrReloadRefused.
func TestUpdateDatabaseDirWithFake(t *testing.T) {
	ctx := context.Background()
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1) to stand in for clamscan")
	}
	dir := t.TempDir()
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("daily.cud", cvdHeader(42))
	fake := clamdtest.StartFake(t, clamdtest.FakeConfig{Signatures: fakeSigs,
		Version: "ClamAV 1.4.6/42/Thu Jan  1 00:00:00 2025", ReloadVersion: "ClamAV 1.4.6/43/Fri Jan  2 00:00:00 2025"})
	s := engine.Scanner{Address: fake.Address.String(), DatabaseDir: dir, Clamscan: truePath, ReloadWait: 200 * time.Millisecond}
	e := newEngine(t, s)
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The first update reloads (what clamd loaded before is not known);
	// VERSION names 43 at once, not the directory's 42: refused.
	if err := e.Update(ctx); !errors.Is(err, engine.ErrReloadRefused) || !strings.Contains(err.Error(), "42") {
		t.Errorf("a database version clamd never reports: %v, want ErrReloadRefused naming 42", err)
	}
	write("daily.cud", cvdHeader(43))
	start := time.Now()
	if err := e.Update(ctx); err != nil {
		t.Fatalf("daily 43: %v", err)
	}
	if took := time.Since(start); took >= 200*time.Millisecond {
		t.Errorf("Update took %v: it waited past the version clamd reported", took)
	}
	if v := e.Env().Head().Scanner.SignaturesVersion; v != "43" || fake.Reloads() != 2 {
		t.Errorf("head %q after %d reloads; want 43 after 2", v, fake.Reloads())
	}
	for range 3 { // nothing changed: no RELOAD
		if err := e.Update(ctx); !errors.Is(err, psengine.ErrUnchanged) {
			t.Fatalf("update with nothing changed: %v, want ErrUnchanged", err)
		}
	}
	if fake.Reloads() != 2 {
		t.Errorf("%d reloads after updates with nothing changed, want still 2", fake.Reloads())
	}
	write("extra.ndb", []byte("PsTest.Extra:0:*:414243\n"))
	if err := e.Update(ctx); err != nil || fake.Reloads() != 3 {
		t.Errorf("a new file: %v, %d reloads; want a third", err, fake.Reloads())
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

// A real clamd, its database directory known: new signatures in a .cud
// database of a new version are picked up by Update (head and answers); a
// malformed database file fails the update, naming it, and clamd is not
// asked to reload (the previous databases keep detecting); an unchanged
// directory is no reload.
func TestRealClamdUpdate(t *testing.T) {
	ctx := context.Background()
	cfg := clamdtest.StandardSignatures(t)
	cfg.CVDVersion = 42
	d := clamdtest.StartDaemon(t, cfg)
	e := newEngine(t, engine.Scanner{Address: d.Address.String(), DatabaseDir: d.DBDir, ReloadWait: 30 * time.Second})
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
	reloads := strings.Count(d.Log(), "Reading databases from")
	if reloads < 1 { // the update's reload
		t.Fatalf("clamd's log shows %d reloads, want 1 or more:\n%s", reloads, d.Log())
	}

	broken := filepath.Join(d.DBDir, "broken.ndb")
	if err := os.WriteFile(broken, []byte("Broken:zz:not-a-signature\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := e.Update(ctx)
	if !errors.Is(err, database.ErrRejected) || !strings.Contains(err.Error(), broken) {
		t.Errorf("update with a malformed database: %v, want ErrRejected naming %s", err, broken)
	}
	if v := e.Env().Head().Scanner.SignaturesVersion; v != "43" {
		t.Errorf("head after a refused update: %q, want 43", v)
	}
	if a := psenginetest.Analyze(t, e, marker).Analysis; a.Verdict != psengine.Malicious {
		t.Errorf("after a refused update: %s, want malicious (the previous databases)", a.Verdict)
	}
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := e.Update(ctx); !errors.Is(err, psengine.ErrUnchanged) {
			t.Errorf("update with nothing changed: %v, want ErrUnchanged", err)
		}
	}
	if n := strings.Count(d.Log(), "Reading databases from"); n != reloads {
		t.Errorf("clamd reloaded %d more times, want none (nothing changed, the malformed file was refused)\n%s", n-reloads, d.Log())
	}
	if err := e.Ready(ctx); err != nil {
		t.Errorf("Ready: %v", err)
	}
}
