package database_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyswarm/psengine/examples/clamav/database"
	"github.com/polyswarm/psengine/examples/clamav/internal/clamdtest"
)

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func header(version string) string {
	h := "ClamAV-VDB:06 Dec 2026 23-51 +0000:" + version + ":2:216:684b2a443fb1b50931dd30ae52417b02:X:psengine:1796601111"
	return h + strings.Repeat(" ", database.HeaderSize-len(h)) + "body"
}

func TestSnapshot(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.ndb", "A:0:*:414243\n")
	write(t, dir, "freshclam.dat", "not a database")
	write(t, dir, "daily.cud", header("42"))
	s1, err := database.Read(dir, database.Snapshot{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s1.Files) != 2 || s1.Files[0].Name != "a.ndb" || s1.Files[1].Name != "daily.cud" || s1.Version != "42" {
		t.Fatalf("snapshot %+v, want a.ndb and daily.cud at version 42", s1)
	}
	same, err := database.Read(dir, s1)
	if err != nil || same.Digest() != s1.Digest() || len(same.Changed(s1)) != 0 {
		t.Errorf("unchanged directory: digest %s vs %s, changed %v (%v)", same.Digest(), s1.Digest(), same.Changed(s1), err)
	}

	// New content of the same size: a new modification time, a new digest.
	later := time.Now().Add(time.Minute)
	p := write(t, dir, "a.ndb", "A:0:*:414244\n")
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	write(t, dir, "b.hdb", "44d88612fea8a8f36de82e1278abb02f:68:B\n")
	s2, err := database.Read(dir, s1)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Digest() == s1.Digest() {
		t.Error("changed directory, same digest")
	}
	want := []string{filepath.Join(dir, "a.ndb"), filepath.Join(dir, "b.hdb")}
	if got := s2.Changed(s1); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("changed %v, want %v", got, want)
	}
	if got := s2.Changed(database.Snapshot{}); len(got) != 3 {
		t.Errorf("changed since nothing: %v, want every file", got)
	}

	if _, err := database.Read(t.TempDir(), database.Snapshot{}); err == nil {
		t.Error("an empty directory read without error")
	}
	if _, err := database.Read(filepath.Join(dir, "none"), database.Snapshot{}); err == nil {
		t.Error("a missing directory read without error")
	}
}

func TestParseHeader(t *testing.T) {
	h, err := database.ParseHeader([]byte(header("27513")))
	if err != nil || h.Version != 27513 || h.Signatures != 2 || h.Builder != "psengine" || h.Time != "06 Dec 2026 23-51 +0000" {
		t.Errorf("ParseHeader = %+v, %v", h, err)
	}
	for _, bad := range []string{"", "ClamAV-VDB:", "ClamAV-VDB:time", "ClamAV-VDB:time:x:1", "ClamAV-VDB:time:-1:1", "MZ\x90\x00"} {
		if h, err := database.ParseHeader([]byte(bad)); err == nil {
			t.Errorf("ParseHeader(%q) = %+v, want an error", bad, h)
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{header("1"), header("27513"), "ClamAV-VDB:a:1", "ClamAV-VDB::", "ClamAV-VDB:a:99999999999999999999", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := database.ParseHeader(b)
		if err != nil {
			return
		}
		if h.Version < 0 || !strings.HasPrefix(string(b), "ClamAV-VDB:") {
			t.Errorf("ParseHeader(%q) = %+v", b, h)
		}
	})
}

// Check with the real clamscan: good databases load, a malformed one is
// rejected with clamscan's reason naming the file; no clamscan is an
// error, not a pass.
func TestCheck(t *testing.T) {
	clamscan := clamdtest.Need(t, "clamscan")[0]
	ctx := context.Background()
	dir := t.TempDir()
	good := write(t, dir, "good.ndb", "PsTest.Good:0:*:50534e47494e45\n")
	hdb := write(t, dir, "good.hdb", "44d88612fea8a8f36de82e1278abb02f:68:PsTest.Hash\n")
	if err := database.Check(ctx, clamscan, []string{good, hdb}); err != nil {
		t.Errorf("good databases: %v", err)
	}
	bad := write(t, dir, "broken.ndb", "Broken:zz:not-a-signature\n")
	err := database.Check(ctx, "", []string{good, bad})
	if !errors.Is(err, database.ErrRejected) || !strings.Contains(err.Error(), bad) {
		t.Errorf("a malformed database: %v, want ErrRejected naming %s", err, bad)
	}
	if err := database.Check(ctx, filepath.Join(dir, "no-clamscan"), []string{good}); err == nil || errors.Is(err, database.ErrRejected) {
		t.Errorf("a missing clamscan: %v, want an error that is not a rejection", err)
	}
	if err := database.Check(ctx, clamscan, nil); err != nil {
		t.Errorf("nothing to check: %v", err)
	}
}
