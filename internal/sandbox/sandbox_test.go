package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestEnviron(t *testing.T) {
	parent := []string{"PATH=/bin", "HOME=/root", "LC_ALL=C", "PSENGINE_WEBHOOK_SECRET=s", "AWS_SECRET_ACCESS_KEY=k",
		"PSENGINE_DATA_DIR=/d", "LICENSE_KEY=l", "TMPDIR=/tmp"}
	got := Environ(parent, []string{"LICENSE_KEY", NeverPassed}, []string{"TMPDIR=/child", "PSENGINE_WEBHOOK_SECRET=again", "EXTRA=1"})
	want := []string{"PATH=/bin", "HOME=/root", "LC_ALL=C", "PSENGINE_DATA_DIR=/d", "LICENSE_KEY=l", "TMPDIR=/child", "EXTRA=1"}
	if !slices.Equal(got, want) {
		t.Errorf("Environ = %q, want %q", got, want)
	}
}

func TestEtcEntriesLeaveSecretsOut(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"passwd", "shadow", "gshadow", "ssh", "ssl", "hosts"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got := etcEntries(dir)
	for _, p := range got {
		switch filepath.Base(p) {
		case "shadow", "gshadow", "ssh", "ssl":
			t.Errorf("%s is readable", p)
		}
	}
	if !slices.Contains(got, filepath.Join(dir, "passwd")) || !slices.Contains(got, filepath.Join(dir, "ssl", "certs")) {
		t.Errorf("etcEntries = %q: want passwd and ssl/certs", got)
	}
}

func TestStageLinksAndReleases(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "sample.exe")
	if err := os.WriteFile(src, []byte("MZ"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := NewDir(tmp, "eng-", -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	staged, release, err := d.Stage(src)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(staged) != d.In || filepath.Ext(staged) != ".exe" {
		t.Errorf("staged as %s, want N-sample.exe in %s", staged, d.In)
	}
	if data, err := os.ReadFile(staged); err != nil || string(data) != "MZ" {
		t.Errorf("staged content %q, %v", data, err)
	}
	release()
	if _, err := os.Stat(staged); !os.IsNotExist(err) {
		t.Errorf("after release: %v", err)
	}
	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 1 {
		t.Errorf("left in the parent: %v", entries)
	}
}

func TestAllowDial(t *testing.T) {
	var p Policy
	for _, addr := range []string{"unix:/run/clamav/clamd.ctl", "tcp:127.0.0.1:3310", "[::1]:8080", "clamd.example:443"} {
		if err := p.AllowDial(addr); err != nil {
			t.Errorf("AllowDial(%q): %v", addr, err)
		}
	}
	if !slices.Equal(p.Unix, []string{"/run/clamav/clamd.ctl"}) || !slices.Equal(p.TCP, []uint16{3310, 8080, 443}) {
		t.Errorf("Unix %q, TCP %v", p.Unix, p.TCP)
	}
	for _, bad := range []string{"unix:", "127.0.0.1", "tcp:host:0", "host:http", "host:70000"} {
		if err := p.AllowDial(bad); err == nil {
			t.Errorf("AllowDial(%q): no error", bad)
		}
	}
}
