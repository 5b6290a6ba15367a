//go:build unix

package winex_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/polyswarm/psengine/winex"
)

func sh(script string, args ...string) winex.Cmd {
	return winex.Cmd{Path: "/bin/sh", Args: append([]string{"-c", script, "sh"}, args...)}
}

func TestRunNativeExitCodes(t *testing.T) {
	needUnix(t)
	for _, code := range []int{0, 1, 2, 7, 255} {
		res, err := winex.Run(t.Context(), sh("exit "+strconv.Itoa(code)))
		if err != nil {
			t.Fatalf("exit %d: Run error %v (a non-zero exit is not an error)", code, err)
		}
		if res.ExitCode != code {
			t.Errorf("ExitCode = %d, want %d", res.ExitCode, code)
		}
	}
}

func TestRunNativeOutput(t *testing.T) {
	needUnix(t)
	c := sh(`printf 'out\r\nline 2\r\n'; printf 'err: %s\n' "$FOO" >&2; pwd`)
	c.Dir = t.TempDir()
	c.Env = []string{"FOO=bar baz"}
	res, err := winex.Run(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	wd, err := filepath.EvalSymlinks(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	want := winex.Result{
		Stdout:    "out\nline 2\n" + wd + "\n",
		Stderr:    "err: bar baz\n",
		RawStdout: []byte("out\r\nline 2\r\n" + wd + "\n"),
		RawStderr: []byte("err: bar baz\n"),
	}
	got := res
	got.Duration, got.PID = 0, 0
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Result (-want +got):\n%s", diff)
	}
	if res.PID <= 0 || res.Duration <= 0 {
		t.Errorf("PID %d, Duration %v: want both set", res.PID, res.Duration)
	}
}

func TestRunNativeStdin(t *testing.T) {
	needUnix(t)
	input := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: more than a pipe holds
	c := winex.Cmd{Path: "cat", Stdin: bytes.NewReader(input), Encoding: winex.UTF8}
	res, err := winex.Run(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.RawStdout, input) {
		t.Errorf("cat returned %d bytes, want the %d given", len(res.RawStdout), len(input))
	}
	// A program that ignores a large stdin must not block the copier forever.
	c = sh("exit 0")
	c.Stdin = bytes.NewReader(input)
	if _, err := winex.Run(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	// An *os.File is handed over as is.
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err = winex.Run(t.Context(), winex.Cmd{Path: "cat", Stdin: f})
	if err != nil || len(res.RawStdout) != 0 {
		t.Errorf("cat </dev/null: %q, %v", res.RawStdout, err)
	}
}

func TestRunNativeKillsTreeOnDeadline(t *testing.T) {
	needUnix(t)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	res, err := winex.Run(ctx, sh(`echo started; sleep 100 & sleep 100`))
	if !errors.Is(err, winex.ErrKilled) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want ErrKilled wrapping DeadlineExceeded", err)
	}
	if res.ExitCode != -1 || res.Stdout != "started\n" {
		t.Errorf("ExitCode %d, Stdout %q: want -1 and the output so far", res.ExitCode, res.Stdout)
	}
	if left := liveInGroup(t, res.PID); len(left) > 0 {
		t.Errorf("processes left in group %d: %v", res.PID, left)
	}
}

func TestRunCancelCause(t *testing.T) {
	needUnix(t)
	errStop := errors.New("bounty expired")
	ctx, cancel := context.WithTimeoutCause(t.Context(), 200*time.Millisecond, errStop)
	defer cancel()
	res, err := winex.Run(ctx, sh(`printf partial; exec sleep 100`))
	if !errors.Is(err, winex.ErrKilled) || !errors.Is(err, errStop) {
		t.Fatalf("Run = %v, want ErrKilled wrapping the cause", err)
	}
	if res.ExitCode != -1 || res.Stdout != "partial" {
		t.Errorf("ExitCode %d, Stdout %q: want -1 and the partial output", res.ExitCode, res.Stdout)
	}
}

func TestRunLeftoversKilledAfterExit(t *testing.T) {
	needUnix(t)
	res, err := winex.Run(t.Context(), sh(`sleep 100 & echo $!`))
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Run: %v, exit %d", err, res.ExitCode)
	}
	if left := liveInGroup(t, res.PID); len(left) > 0 {
		t.Errorf("background sleep survived the program: %v", left)
	}
}

// A process that leaves the group (setsid) and keeps the output pipe open
// must not hold Run: the deadline is far away, so an endless wait on the pipe
// would end in ErrKilled.
func TestRunDoesNotWaitForPipeHolders(t *testing.T) {
	needUnix(t)
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid command")
	}
	ctx := testCtx(t, 20*time.Second)
	res, err := winex.Run(ctx, sh(`echo before; setsid sleep 100 & echo "$!"; echo after >&2`))
	if err != nil {
		t.Fatalf("Run = %v: it waited for the escaped process holding the pipes", err)
	}
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if len(lines) != 2 || lines[0] != "before" || res.Stderr != "after\n" {
		t.Fatalf("stdout %q stderr %q", res.Stdout, res.Stderr)
	}
	pid, err := strconv.Atoi(lines[1])
	if err != nil {
		t.Fatal(err)
	}
	// It escaped the group kill by design; end it ourselves.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Errorf("the setsid sleep %d was already gone: %v", pid, err)
	}
}

func TestRunOutputCap(t *testing.T) {
	needUnix(t)
	res, err := winex.Run(t.Context(), winex.Cmd{
		Path: "/bin/sh", Args: []string{"-c", "head -c 300000 /dev/zero | tr '\\0' a; echo done >&2"},
		MaxOutput: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.RawStdout) != 1000 || !res.Truncated || res.Stdout != strings.Repeat("a", 1000) {
		t.Errorf("kept %d bytes, truncated %v: want 1000 and true", len(res.RawStdout), res.Truncated)
	}
	if res.Stderr != "done\n" || res.ExitCode != 0 {
		t.Errorf("stderr %q, exit %d: the program must run to its end", res.Stderr, res.ExitCode)
	}
	res, err = winex.Run(t.Context(), sh(`echo small`))
	if err != nil || res.Truncated {
		t.Errorf("small output: truncated %v, err %v", res.Truncated, err)
	}
}

func TestRunStartErrors(t *testing.T) {
	needUnix(t)
	_, err := winex.Run(t.Context(), winex.Cmd{Path: "no-such-program-psengine"})
	if !errors.Is(err, winex.ErrStart) || !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("missing program: %v, want ErrStart wrapping exec.ErrNotFound", err)
	}
	_, err = winex.Run(t.Context(), winex.Cmd{Path: "/bin/sh", Dir: filepath.Join(t.TempDir(), "missing")})
	if !errors.Is(err, winex.ErrStart) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing dir: %v, want ErrStart wrapping ErrNotExist", err)
	}
	if _, err := winex.Run(t.Context(), winex.Cmd{}); !errors.Is(err, winex.ErrStart) {
		t.Errorf("empty path: %v, want ErrStart", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := winex.Run(ctx, sh("exit 0")); !errors.Is(err, winex.ErrStart) || !errors.Is(err, context.Canceled) {
		t.Errorf("done context: %v, want ErrStart wrapping Canceled", err)
	}
}

func TestRunSignaled(t *testing.T) {
	needUnix(t)
	res, err := winex.Run(t.Context(), sh(`kill -SEGV $$`))
	if !errors.Is(err, winex.ErrSignaled) || res.ExitCode != -1 {
		t.Errorf("Run = %v, exit %d: want ErrSignaled and -1", err, res.ExitCode)
	}
}

func TestRunFakeWinePrefixRefused(t *testing.T) {
	needUnix(t)
	prefix := t.TempDir() // exists, but wineboot never ran in it
	w := &winex.Wine{Loader: "/bin/echo", Prefix: prefix}
	_, err := winex.Run(t.Context(), w.Command("cmd"))
	if !errors.Is(err, winex.ErrPrefix) {
		t.Fatalf("Run = %v, want ErrPrefix", err)
	}
	// Once it looks initialised, the loader runs with Wine's environment.
	if err := os.WriteFile(filepath.Join(prefix, "system.reg"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w = &winex.Wine{Loader: "/bin/sh", Prefix: prefix, Env: []string{"EXTRA=1"}}
	c := w.Command("-c", `echo "$WINEPREFIX|$WINEDEBUG|$LANG|$LC_ALL|$TZ|$EXTRA|$CALLER"`)
	c.Env = []string{"CALLER=2"}
	res, err := winex.Run(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	if want := prefix + "|-all|C.UTF-8|C.UTF-8|UTC|1|2\n"; res.Stdout != want {
		t.Errorf("environment %q, want %q", res.Stdout, want)
	}
}

func TestNilWineRunsNatively(t *testing.T) {
	needUnix(t)
	var w *winex.Wine // what Discover returns on Windows
	res, err := winex.Run(t.Context(), w.Command("/bin/sh", "-c", "echo direct"))
	if err != nil || res.Stdout != "direct\n" {
		t.Errorf("Run = %q, %v", res.Stdout, err)
	}
}
