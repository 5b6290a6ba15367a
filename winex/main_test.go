package winex_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/polyswarm/psengine/winex"
)

// The Wine tests share one prefix, created on first use (9-25 s) under a temp
// directory and removed at the end, or the one CI exports in
// PSENGINE_TEST_WINEPREFIX (kept). A persistent wineserver runs for it while
// the tests run, as in an engine between setup and teardown.
var (
	wineOnce    sync.Once
	sharedWine  *winex.Wine
	wineErr     error
	wineCleanup func() error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if wineCleanup != nil {
		if err := wineCleanup(); err != nil {
			fmt.Fprintln(os.Stderr, "wine teardown:", err)
			code = 1
		}
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
		if kids := children(); len(kids) > 0 {
			fmt.Fprintln(os.Stderr, "child processes left behind:", kids)
			code = 1
		}
	}
	os.Exit(code)
}

// needWine returns the shared Wine with its prefix initialised and a
// persistent server running. Without Wine it skips, or fails under CI=true.
func needWine(tb testing.TB) *winex.Wine {
	tb.Helper()
	wineOnce.Do(setupWine)
	if sharedWine != nil {
		return sharedWine
	}
	if errors.Is(wineErr, winex.ErrNoWine) && os.Getenv("CI") != "true" {
		tb.Skipf("wine not installed: %v", wineErr)
	}
	tb.Fatalf("wine unusable: %v", wineErr)
	return nil
}

func setupWine() {
	if runtime.GOOS == "windows" {
		wineErr = fmt.Errorf("%w: Windows runs programs directly", winex.ErrNoWine)
		return
	}
	w, err := winex.Discover(nil)
	if err != nil {
		wineErr = err
		return
	}
	var tmp string
	unlock := func() error { return nil }
	if p := os.Getenv("PSENGINE_TEST_WINEPREFIX"); p != "" {
		if w.Prefix, err = filepath.Abs(p); err != nil {
			wineErr = err
			return
		}
		if unlock, err = lockPrefix(w.Prefix); err != nil {
			wineErr = err
			return
		}
	} else {
		if tmp, err = os.MkdirTemp("", "winex-test-"); err != nil {
			wineErr = err
			return
		}
		w.Prefix = filepath.Join(tmp, "prefix")
	}
	// wineCleanup stops the persistent server and waits until no server
	// runs for the prefix (one a cold run started outlives it by seconds):
	// none of ours may outlive our turn on a shared prefix, nor the removal
	// of a temporary one. A server still running after a minute is left
	// behind: it is reported, and killed so that the next user of the
	// prefix does not inherit it.
	wineCleanup = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := w.StopServer(ctx)
		if w.Server != "" { // without one the Wine tests skipped
			if werr := w.WaitServer(ctx); werr != nil {
				kctx, kcancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer kcancel()
				_, kerr := winex.Run(kctx, winex.Cmd{Path: w.Server, Args: []string{"-k"}, Env: w.Environ()})
				err = errors.Join(err, fmt.Errorf("a wineserver outlived the tests (killed): %w", errors.Join(werr, kerr)))
			}
		}
		if tmp != "" {
			removeServerDir(w.Prefix)
			err = errors.Join(err, os.RemoveAll(tmp))
		}
		return errors.Join(err, unlock())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := w.InitPrefix(ctx); err != nil {
		wineErr = err
		return
	}
	if err := w.StartServer(ctx); err != nil {
		wineErr = err
		return
	}
	sharedWine = w
}

// removeServerDir removes the directory in which Debian's Wine keeps a
// prefix's server socket and lock (PREFIX/wineserver names it: wine-XXXXXX
// under TMPDIR or /tmp), which Wine leaves behind. Call it once no server
// runs, before removing a temporary prefix.
func removeServerDir(prefix string) {
	b, err := os.ReadFile(filepath.Join(prefix, "wineserver"))
	name := strings.TrimSpace(string(b))
	if err != nil || !serverDirName.MatchString(name) {
		return
	}
	for _, tmp := range []string{os.Getenv("TMPDIR"), "/tmp"} {
		if tmp != "" {
			os.RemoveAll(filepath.Join(tmp, name))
		}
	}
}

var serverDirName = regexp.MustCompile(`^wine-[A-Za-z0-9]{6}$`)

func needUnix(t testing.TB) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("uses /bin/sh")
	}
}

// procInfo is a process as /proc shows it.
type procInfo struct {
	pid, ppid, pgrp int
	state           string
	comm            string
}

func (p procInfo) String() string {
	return fmt.Sprintf("%d(%s %s ppid=%d pgrp=%d)", p.pid, p.comm, p.state, p.ppid, p.pgrp)
}

func processes() []procInfo {
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []procInfo
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // gone meanwhile
		}
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		fields := strings.Fields(s[close+1:])
		if len(fields) < 3 {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
		ppid, _ := strconv.Atoi(fields[1])
		pgrp, _ := strconv.Atoi(fields[2])
		out = append(out, procInfo{pid: pid, ppid: ppid, pgrp: pgrp, state: fields[0], comm: s[open+1 : close]})
	}
	return out
}

// children lists this process's child processes, zombies included.
func children() []procInfo {
	if runtime.GOOS != "linux" {
		return nil
	}
	var out []procInfo
	for _, p := range processes() {
		if p.ppid == os.Getpid() {
			out = append(out, p)
		}
	}
	return out
}

// liveInGroup lists the processes of group pgrp that are not zombies, and the
// zombies whose parent is this process (ours to reap). Orphaned zombies
// belong to init. SIGKILL takes effect asynchronously, so it polls for up to
// five seconds before reporting survivors.
func liveInGroup(t *testing.T, pgrp int) []procInfo {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	var left []procInfo
	for deadline := time.Now().Add(5 * time.Second); ; {
		left = left[:0]
		for _, p := range processes() {
			if p.pgrp == pgrp && (p.state != "Z" || p.ppid == os.Getpid()) {
				left = append(left, p)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond) // waiting on the kernel, not on a timer under test
	}
}
