//go:build unix

package fetch_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/polyswarm/psengine/fetch"
)

// deadPID returns the ID of a process that ran and exited (and was waited
// for), checked to be free.
func deadPID(t *testing.T) int {
	t.Helper()
	for range 10 {
		cmd := exec.Command("true")
		if err := cmd.Run(); err != nil {
			t.Skipf("cannot run true: %v", err)
		}
		pid := cmd.ProcessState.Pid()
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			return pid
		}
	}
	t.Fatal("no dead process ID found")
	return 0
}

func TestTempFilesNameTheirProcess(t *testing.T) {
	p, dir := testPolicy(t)
	p.MemoryLimit = 1
	c, err := p.Fetch(t.Context(), "data:,spilled", "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	path, _ := c.Path()
	if want := fmt.Sprintf("%s%d-", fetch.DefaultTempPrefix, os.Getpid()); !strings.HasPrefix(filepath.Base(path), want) {
		t.Errorf("temp file %s, want a name starting %s", path, want)
	}
	// RemoveStale leaves this live process's file alone.
	if removed, err := fetch.RemoveStale(dir, ""); len(removed) > 0 || err != nil {
		t.Errorf("RemoveStale = %v, %v; want nothing removed", removed, err)
	}
	if got := contentBytes(t, c); string(got) != "spilled" {
		t.Errorf("content after RemoveStale: %q", got)
	}
}

func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(outside, []byte("not ours"), 0o600); err != nil {
		t.Fatal(err)
	}
	dead, self := deadPID(t), os.Getpid()
	pre := fetch.DefaultTempPrefix
	stale := []string{
		fmt.Sprintf("%s%d-123456", pre, dead),
		fmt.Sprintf("%s%d-x", pre, dead),
	}
	kept := []string{
		fmt.Sprintf("%s%d-123456", pre, self),      // this process
		fmt.Sprintf("%s%d-123456", "other-", dead), // another prefix
		fmt.Sprintf("%s1-123456", pre),             // init runs (EPERM counts as running)
		pre + "123456",                             // no process ID (the old naming)
		fmt.Sprintf("%s%d", pre, dead),             // no "-" and random part
		fmt.Sprintf("%s%d-", pre, dead),
		fmt.Sprintf("%s0%d-1", pre, dead), // a leading zero
		fmt.Sprintf("%s+%d-1", pre, dead),
		pre + "0-1",
		pre + "-1-1",
		pre + "99999999999999999999-1",
		"unrelated",
	}
	for _, name := range append(slices.Clone(stale), kept...) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	link := fmt.Sprintf("%s%d-link", pre, dead)
	if err := os.Symlink(outside, filepath.Join(dir, link)); err != nil {
		t.Fatal(err)
	}
	sub := fmt.Sprintf("%s%d-dir", pre, dead)
	if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
		t.Fatal(err)
	}
	kept = append(kept, link, sub)

	removed, err := fetch.RemoveStale(dir, pre)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, name := range stale {
		want = append(want, filepath.Join(dir, name))
	}
	slices.Sort(want)
	if !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	left := dirEntries(t, dir)
	slices.Sort(kept)
	if !slices.Equal(left, kept) {
		t.Errorf("left %v, want %v", left, kept)
	}
	if b, err := os.ReadFile(outside); err != nil || string(b) != "not ours" {
		t.Errorf("the symlink's target: %q, %v; want it untouched", b, err)
	}

	// A second run finds nothing more to do.
	if removed, err := fetch.RemoveStale(dir, pre); len(removed) > 0 || err != nil {
		t.Errorf("second RemoveStale = %v, %v", removed, err)
	}
}

// RemoveStale resolves "" like temp files do: $TMPDIR, $TMPPREFIX (its last
// path element).
func TestRemoveStaleDefaults(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	t.Setenv("TMPPREFIX", "/tmp/zsh")
	dead := deadPID(t)
	for _, name := range []string{fmt.Sprintf("zsh%d-1", dead), fmt.Sprintf("%s%d-1", fetch.DefaultTempPrefix, dead)} {
		if err := os.WriteFile(filepath.Join(tmp, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := fetch.RemoveStale("", "")
	if err != nil || !slices.Equal(removed, []string{filepath.Join(tmp, fmt.Sprintf("zsh%d-1", dead))}) {
		t.Errorf("RemoveStale(\"\", \"\") = %v, %v; want the zsh file removed", removed, err)
	}
	if _, err := fetch.RemoveStale(filepath.Join(tmp, "missing"), ""); !errors.Is(err, fetch.ErrUnreachable) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("RemoveStale of a missing directory: %v, want ErrUnreachable wrapping ErrNotExist", err)
	}
}
