package winex

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// transientServerWait bounds how long StartServer waits for a wineserver
// started on demand by an earlier run (it exits with its last client).
var transientServerWait = 10 * time.Second

// InitPrefix creates and populates the prefix with `wine wineboot -i`, then
// waits with `wineserver -w` until Wine has written everything (9-25 s with
// Wine 8). It returns at once when the prefix is already initialised (its
// system.reg exists). Missing parent directories are created. Unless Env or
// the process environment sets WINEDLLOVERRIDES, the Mono and Gecko
// installers are skipped (mscoree,mshtml=), which have nothing to install
// offline and only cost time. Call it before StartServer; when a server
// started by StartServer runs, the `wineserver -w` step is skipped.
// Errors wrap ErrPrefix; a context that ends kills wineboot.
func (w *Wine) InitPrefix(ctx context.Context) error {
	w.mu.Lock() // one initialisation at a time, and not during StartServer
	defer w.mu.Unlock()
	if err := w.checkPrefix(false); err != nil {
		return err
	}
	if w.initialised() {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(w.Prefix), 0o755); err != nil {
		return fmt.Errorf("%w: %w", ErrPrefix, err)
	}
	env := os.Environ()
	if !hasVar(env, "WINEDLLOVERRIDES") && !hasVar(w.Env, "WINEDLLOVERRIDES") {
		env = append(env, "WINEDLLOVERRIDES=mscoree,mshtml=")
	}
	env = append(env, w.Environ()...)
	res, err := execute(ctx, spec{
		argv: []string{w.Loader, "wineboot", "-i"}, env: env,
		keepGroup: true, fileOutput: true,
	})
	if err != nil {
		return fmt.Errorf("%w: wineboot -i: %w", ErrPrefix, err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("%w: wineboot -i exited %d: %s", ErrPrefix, res.ExitCode, tail(res.Stderr))
	}
	if !w.serverStarted {
		if err := w.WaitServer(ctx); err != nil {
			return fmt.Errorf("%w: %w", ErrPrefix, err)
		}
	}
	if !w.initialised() {
		return fmt.Errorf("%w: wineboot -i left no system.reg in %s: %s", ErrPrefix, w.Prefix, tail(res.Stderr))
	}
	return nil
}

// StartServer starts a persistent wineserver (`wineserver -p`) for the
// prefix, then runs one warm-up program so that Wine's session processes
// (services.exe, explorer.exe...) exist before the first scan. Runs are then
// several times faster (Wine 8 on two cores: `cmd /c exit 0` in 0.1 s instead
// of 0.55 s). It is meant for an engine's setup; it returns nil at once if
// this Wine already started one.
//
// The server detaches into a session of its own (setsid), so the group kill
// of a scan never reaches it; StopServer stops it. It is not a child of this
// process: init collects its exit status.
//
// When a server already serves the prefix: one that stays (an operator's
// `wineserver -p`, or the server of an engine that was killed) gives
// ErrServerRunning at once, and runs use it as they would this Wine's own;
// one that an earlier run started on demand, which exits a moment after
// its last client, is waited for (up to 10 s), then replaced. Telling them
// apart needs Linux's /proc (see RunningServer); elsewhere every running
// server is waited for, and one still there after 10 s gives
// ErrServerRunning. Other errors wrap ErrServer or ErrPrefix.
func (w *Wine) StartServer(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.serverStarted {
		return nil
	}
	if w.Server == "" {
		return fmt.Errorf("%w: %w: no wineserver", ErrServer, ErrNoWine)
	}
	if err := w.checkPrefix(true); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		res, err := w.server(ctx, "-p")
		if err != nil {
			return fmt.Errorf("%w: wineserver -p: %w", ErrServer, err)
		}
		if res.ExitCode == 0 {
			break
		}
		if res.ExitCode != 2 || attempt == 2 { // 2: the server lock is held
			return fmt.Errorf("%w: wineserver -p exited %d: %s", ErrServer, res.ExitCode, tail(res.Stderr))
		}
		if info, ok := findServer(w.Prefix); ok && info.Persistent {
			return fmt.Errorf("%w: %s: wineserver pid %d (%s); stop it with wineserver -k",
				ErrServerRunning, w.Prefix, info.PID, strings.Join(info.Args, " "))
		}
		wctx, cancel := context.WithTimeout(ctx, transientServerWait)
		err = w.WaitServer(wctx)
		cancel()
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ErrServer, context.Cause(ctx))
		}
		if err != nil {
			return fmt.Errorf("%w: %s (stop it with wineserver -k)", ErrServerRunning, w.Prefix)
		}
	}
	w.serverStarted = true
	res, err := execute(ctx, spec{
		argv: []string{w.Loader, "cmd", "/c", "exit", "0"},
		env:  append(os.Environ(), w.Environ()...), keepGroup: true, fileOutput: true,
	})
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("exit code %d: %s", res.ExitCode, tail(res.Stderr))
	}
	if err != nil {
		return fmt.Errorf("%w: warm-up run after wineserver -p: %w", ErrServer, err)
	}
	return nil
}

// StopServer stops the server StartServer started (`wineserver -k`, which
// also kills every Wine program still running in the prefix) and waits until
// it is gone. It returns nil when there is none to stop. Errors wrap ErrServer.
func (w *Wine) StopServer(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.serverStarted {
		return nil
	}
	_, err := w.killServer(ctx)
	return err
}

// ServerInfo describes the wineserver process serving a prefix.
type ServerInfo struct {
	PID  int
	Args []string // its arguments (Debian's wrapper adds -p0 before the caller's)
	// Persistent: it stays when its last client exits (its last -p or
	// --persistent option has no delay), as `wineserver -p` does; a server
	// started on demand by a run exits a moment after its last client.
	Persistent bool
}

// RunningServer finds the wineserver process serving the prefix (Linux
// only: it reads /proc; elsewhere it finds none).
func (w *Wine) RunningServer() (ServerInfo, bool) { return findServer(w.Prefix) }

// persistentForever tells from a wineserver's arguments whether it stays
// when its last client exits: its last -p/--persistent option has no
// delay. Without one, or with a delay (Debian's wrapper passes -p0 first),
// it exits after its last client, possibly after that delay.
func persistentForever(args []string) bool {
	forever := false
	for _, a := range args {
		switch {
		case a == "--":
			return forever
		case strings.HasPrefix(a, "--persistent"):
			forever = a == "--persistent"
		case strings.HasPrefix(a, "--"):
		case strings.HasPrefix(a, "-") && strings.Contains(a, "p"):
			// Short options may be grouped (-fp); -p's optional delay is
			// the rest of the word.
			_, delay, _ := strings.Cut(a[1:], "p")
			forever = delay == ""
		}
	}
	return forever
}

// KillServer stops whatever wineserver serves the prefix, whoever started
// it (this Wine, an operator's `wineserver -p`, an engine that was killed,
// a run): `wineserver -k`, which also kills every Wine program still
// running in the prefix, then waits until it is gone. It reports whether
// one was running. Errors wrap ErrServer.
func (w *Wine) KillServer(ctx context.Context) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.Server == "" {
		return false, fmt.Errorf("%w: %w: no wineserver", ErrServer, ErrNoWine)
	}
	return w.killServer(ctx)
}

// killServer runs `wineserver -k` and waits until the server is gone,
// reporting whether one was running. Callers hold w.mu.
func (w *Wine) killServer(ctx context.Context) (bool, error) {
	res, err := w.server(ctx, "-k")
	if err != nil {
		return false, fmt.Errorf("%w: wineserver -k: %w", ErrServer, err)
	}
	if res.ExitCode != 0 && res.ExitCode != 1 { // 1: no server was running
		return false, fmt.Errorf("%w: wineserver -k exited %d: %s", ErrServer, res.ExitCode, tail(res.Stderr))
	}
	w.serverStarted = false
	return res.ExitCode == 0, w.WaitServer(ctx)
}

// WaitServer blocks until no wineserver serves the prefix (`wineserver -w`):
// at once when none runs, after the last client when one was started on
// demand, never (until ctx ends) while a persistent one runs. Errors wrap
// ErrServer and, when ctx ended, ErrKilled and its cause.
func (w *Wine) WaitServer(ctx context.Context) error {
	if w.Server == "" {
		return fmt.Errorf("%w: %w: no wineserver", ErrServer, ErrNoWine)
	}
	res, err := w.server(ctx, "-w")
	if err != nil {
		return fmt.Errorf("%w: wineserver -w: %w", ErrServer, err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("%w: wineserver -w exited %d: %s", ErrServer, res.ExitCode, tail(res.Stderr))
	}
	return nil
}

// server runs the wineserver binary with the prefix's environment. Its output
// goes to temp files: a daemonised server keeps the descriptors.
func (w *Wine) server(ctx context.Context, args ...string) (Result, error) {
	return execute(ctx, spec{
		argv: append([]string{w.Server}, args...),
		env:  append(os.Environ(), w.Environ()...), fileOutput: true,
	})
}

// WinepathToWindows asks winepath for the Windows form of a Unix path. It
// starts Wine (about a second without a persistent server): ToWindows
// computes the same without a process; this is the reference to check it.
func (w *Wine) WinepathToWindows(ctx context.Context, unixPath string) (string, error) {
	return w.winepath(ctx, "-w", unixPath)
}

// WinepathToUnix asks winepath for the Unix form of a Windows path (through
// the dosdevices link, e.g. $WINEPREFIX/dosdevices/c:/windows).
func (w *Wine) WinepathToUnix(ctx context.Context, winPath string) (string, error) {
	return w.winepath(ctx, "-u", winPath)
}

func (w *Wine) winepath(ctx context.Context, flag, p string) (string, error) {
	c := Cmd{Path: w.PathCmd, Args: []string{flag, p}, Env: w.Environ(), Encoding: UTF8}
	if w.PathCmd == "" {
		c = Cmd{Wine: w, Path: "winepath", Args: []string{flag, p}, Encoding: UTF8}
	} else if err := w.checkPrefix(true); err != nil {
		return "", err
	}
	res, err := Run(ctx, c)
	if err != nil {
		return "", err
	}
	out := strings.TrimRight(res.Stdout, "\n")
	if res.ExitCode != 0 || out == "" || strings.Contains(out, "\n") {
		return "", fmt.Errorf("%w: winepath %s %q: exit %d: %s%s", ErrPath, flag, p, res.ExitCode, out, tail(res.Stderr))
	}
	return out, nil
}

func hasVar(env []string, name string) bool {
	for _, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); ok && k == name {
			return true
		}
	}
	return false
}

// tail returns the end of a program's message for an error.
func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 512 {
		s = "..." + s[len(s)-512:]
	}
	return s
}
