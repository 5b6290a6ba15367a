// Package winetest holds what the winescan tests share: the rule for a
// missing Wine (skip, or fail under CI=true), the test prefix, and a tag on
// every process the tests start, to find the Wine processes left behind
// (the persistent wineserver and Wine's session processes detach, so they
// are not children of the test).
package winetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/polyswarm/psengine/winex"
)

// TagVar is the environment variable that marks the processes of one test
// run.
const TagVar = "WINESCAN_TEST_RUN"

// PrefixVar names a ready Wine prefix to use instead of creating one (CI
// exports it). It is kept after the tests. Test binaries using it take turns
// (see Lock): go test runs packages in parallel, and an engine's teardown
// stops the persistent wineserver, which kills every Wine program running in
// the prefix, another package's scans included.
const PrefixVar = "PSENGINE_TEST_WINEPREFIX"

// Tag sets TagVar in this process's environment to a value unique to this
// run, so that every process started from now on (Wine's included) carries
// it. Call it from TestMain before the tests run.
func Tag() error {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	return os.Setenv(TagVar, strconv.Itoa(os.Getpid())+"-"+hex.EncodeToString(b))
}

// Need skips the test when err says Wine is not installed, except under
// CI=true where it fails; any other err fails the test.
func Need(tb testing.TB, err error) {
	tb.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, winex.ErrNoWine) && os.Getenv("CI") != "true" {
		tb.Skipf("wine not installed: %v", err)
	}
	tb.Fatalf("wine unusable: %v", err)
}

// Prefix is a Wine prefix for the tests: PrefixVar's when set, else a new
// one under a temporary directory.
type Prefix struct {
	Wine   *winex.Wine // Prefix field set; no server started
	tmp    string
	unlock func() error
}

// NewPrefix returns an initialised test prefix (creating one takes 10-30 s).
// A prefix from PrefixVar is locked (see Lock) until Close. Errors wrap
// winex.ErrNoWine when Wine is missing.
func NewPrefix(ctx context.Context) (*Prefix, error) {
	if runtime.GOOS == "windows" {
		return nil, fmt.Errorf("%w: the tests run Wine, which Windows does not need", winex.ErrNoWine)
	}
	w, err := winex.Discover(nil)
	if err != nil {
		return nil, err
	}
	p := &Prefix{Wine: w}
	if dir := os.Getenv(PrefixVar); dir != "" {
		if w.Prefix, err = filepath.Abs(dir); err != nil {
			return nil, err
		}
		if p.unlock, err = Lock(w.Prefix); err != nil {
			return nil, err
		}
	} else {
		if p.tmp, err = os.MkdirTemp("", "winescan-test-"); err != nil {
			return nil, err
		}
		w.Prefix = filepath.Join(p.tmp, "prefix")
	}
	if err := w.InitPrefix(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// serverExitWait bounds Close's wait for the wineservers of the prefix.
// Wine stops a server started on demand about 2 s after its last client
// once its session processes (services.exe, explorer.exe...) have exited:
// later, past the 5 s LeftBehind allows, when they are slow to, as on a
// loaded machine.
const serverExitWait = 30 * time.Second

// Close waits until no wineserver serves the prefix (`wineserver -w`): the
// tests' scans without a persistent server start one on demand, which
// outlives them by seconds. One still running after serverExitWait (a
// server left behind) is stopped with `wineserver -k` and reported as an
// error. Only then does Close remove a temporary prefix, or release the
// lock on PrefixVar's prefix: the next test binary to take it finds no
// server of ours, and none of our processes outlives our turn.
func (p *Prefix) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), serverExitWait)
	defer cancel()
	var err error
	if werr := p.Wine.WaitServer(ctx); werr != nil {
		kctx, kcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer kcancel()
		_, kerr := winex.Run(kctx, winex.Cmd{Path: p.Wine.Server, Args: []string{"-k"}, Env: p.Wine.Environ()})
		err = fmt.Errorf("a wineserver still served %s after %v (stopped with wineserver -k): %w", p.Wine.Prefix, serverExitWait, errors.Join(werr, kerr))
	}
	if p.unlock != nil {
		return errors.Join(err, p.unlock())
	}
	RemoveServerDir(p.Wine.Prefix)
	return errors.Join(err, os.RemoveAll(p.tmp))
}

// RemoveServerDir removes the directory in which Wine (Debian's build) keeps
// a prefix's server socket and lock, once no server runs: PREFIX/wineserver
// names it (wine-XXXXXX under TMPDIR or /tmp), and Wine leaves it behind.
// Call it before removing a temporary prefix.
func RemoveServerDir(prefix string) {
	b, err := os.ReadFile(filepath.Join(prefix, "wineserver"))
	name := strings.TrimSpace(string(b))
	if err != nil || !serverDirName.MatchString(name) {
		return
	}
	for _, tmp := range []string{os.Getenv("TMPDIR"), "/tmp"} {
		if tmp != "" {
			_ = os.RemoveAll(filepath.Join(tmp, name))
		}
	}
}

var serverDirName = regexp.MustCompile(`^wine-[A-Za-z0-9]{6}$`)

// Proc is a process found by Tagged.
type Proc struct {
	PID  int
	Comm string
}

func (p Proc) String() string { return fmt.Sprintf("%d(%s)", p.PID, p.Comm) }

// Tagged lists the live processes, other than this one, whose environment
// carries this run's tag (nil when Tag was not called or off Linux).
// Zombies are left out: they hold no resources, and in a container without
// an init that reaps, detached processes stay zombies.
func Tagged() []Proc {
	tag := os.Getenv(TagVar)
	if tag == "" || runtime.GOOS != "linux" {
		return nil
	}
	want := []byte(TagVar + "=" + tag + "\x00")
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var out []Proc
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil || !strings.Contains("\x00"+string(env), "\x00"+string(want)) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		s := string(stat)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open || strings.HasPrefix(strings.TrimSpace(s[close+1:]), "Z") {
			continue
		}
		out = append(out, Proc{PID: pid, Comm: s[open+1 : close]})
	}
	return out
}

// LeftBehind waits up to timeout for the tagged processes to exit (a
// SIGKILL, or wineserver's own shutdown, takes effect asynchronously) and
// returns those still alive.
func LeftBehind(timeout time.Duration) []Proc {
	for deadline := time.Now().Add(timeout); ; {
		left := Tagged()
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond) // waiting on other processes, not on a timer under test
	}
}
