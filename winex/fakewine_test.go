package winex_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyswarm/psengine/winex"
)

// fakeWine writes a loader and a wineserver as shell scripts that log their
// arguments and act like Wine where the lifecycle code looks: wineboot -i
// creates system.reg, `wineserver -p` answers the exit codes listed in
// $STATE/p-codes one per call (0 once they run out), -w waits while
// $STATE/hold exists.
func fakeWine(t *testing.T) (w *winex.Wine, state string) {
	t.Helper()
	needUnix(t)
	dir := t.TempDir()
	state = filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	loader := `#!/bin/sh
echo "wine $*" >> "$STATE/log"
case "$1" in
wineboot) mkdir -p "$WINEPREFIX" && : > "$WINEPREFIX/system.reg" ;;
cmd) exit 0 ;;
crashy-exit)
	# Ran, then aborts at exit the first time, as Wine 8 may.
	echo "ran"
	if [ ! -e "$STATE/crashed" ]; then : > "$STATE/crashed"
		echo "Inconsistency detected by ld.so: dl-fini.c: 87: _dl_fini: Assertion failed!" >&2; exit 127; fi ;;
silent-start)
	# Fails to start the first time, printing nothing, as Wine may when
	# it starts several programs at once; prints when it runs.
	if [ ! -e "$STATE/failed" ]; then : > "$STATE/failed"; exit 1; fi
	echo "started" ;;
*) echo "unknown program $1" >&2; exit 53 ;;
esac
`
	server := `#!/bin/sh
echo "wineserver $*" >> "$STATE/log"
case "$1" in
-p)
	code=$(head -n1 "$STATE/p-codes" 2>/dev/null); sed -i 1d "$STATE/p-codes" 2>/dev/null
	echo "server said $code" >&2
	exit ${code:-0} ;;
-w) while [ -e "$STATE/hold" ]; do sleep 0.05; done ;;
-k) exit 0 ;;
esac
`
	for name, body := range map[string]string{"wine": loader, "wineserver": server} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w = &winex.Wine{
		Loader: filepath.Join(dir, "wine"), Server: filepath.Join(dir, "wineserver"),
		Prefix: filepath.Join(dir, "prefixes", "p1"), Env: []string{"STATE=" + state},
	}
	return w, state
}

func fakeLog(t *testing.T, state string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "log"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func TestLifecycleWithFakeWine(t *testing.T) {
	w, state := fakeWine(t)
	ctx := testCtx(t, time.Minute)
	if _, err := winex.Run(ctx, w.Command("cmd")); !errors.Is(err, winex.ErrPrefix) {
		t.Fatalf("Run before InitPrefix = %v, want ErrPrefix", err)
	}
	if err := w.InitPrefix(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.InitPrefix(ctx); err != nil { // already done: no process
		t.Fatal(err)
	}
	// The first -p finds an on-demand server (2), which then exits.
	if err := os.WriteFile(filepath.Join(state, "p-codes"), []byte("2\n0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.StartServer(ctx); err != nil { // already started: no process
		t.Fatal(err)
	}
	if err := w.StopServer(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"wine wineboot -i", "wineserver -w",
		"wineserver -p", "wineserver -w", "wineserver -p", "wine cmd /c exit 0",
		"wineserver -k", "wineserver -w",
	}
	if got := fakeLog(t, state); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("calls:\n got %q\nwant %q", got, want)
	}
}

func TestStartServerErrors(t *testing.T) {
	t.Run("someone else's persistent server", func(t *testing.T) {
		w, state := fakeWine(t)
		ctx := testCtx(t, time.Minute)
		if err := w.InitPrefix(ctx); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(state, "p-codes"), []byte("2\n2\n2\n"), 0o644)
		os.WriteFile(filepath.Join(state, "hold"), nil, 0o644)
		defer winex.SetTransientServerWait(200 * time.Millisecond)()
		if err := w.StartServer(ctx); !errors.Is(err, winex.ErrServerRunning) {
			t.Errorf("StartServer = %v, want ErrServerRunning", err)
		}
		if err := w.StopServer(ctx); err != nil { // not ours: nothing to stop
			t.Errorf("StopServer = %v", err)
		}
	})
	t.Run("server fails", func(t *testing.T) {
		w, state := fakeWine(t)
		ctx := testCtx(t, time.Minute)
		if err := w.InitPrefix(ctx); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(state, "p-codes"), []byte("1\n"), 0o644)
		err := w.StartServer(ctx)
		if !errors.Is(err, winex.ErrServer) || !strings.Contains(err.Error(), "server said 1") {
			t.Errorf("StartServer = %v, want ErrServer with the server's message", err)
		}
	})
	t.Run("no server binary", func(t *testing.T) {
		w, _ := fakeWine(t)
		w.Server = ""
		if err := w.StartServer(t.Context()); !errors.Is(err, winex.ErrNoWine) {
			t.Errorf("StartServer = %v, want ErrNoWine", err)
		}
	})
}

func TestInitPrefixErrors(t *testing.T) {
	t.Run("wineboot fails", func(t *testing.T) {
		w, _ := fakeWine(t)
		w.Loader = "/bin/false"
		if err := w.InitPrefix(t.Context()); !errors.Is(err, winex.ErrPrefix) {
			t.Errorf("InitPrefix = %v, want ErrPrefix", err)
		}
	})
	t.Run("prefix is a file", func(t *testing.T) {
		w, _ := fakeWine(t)
		os.MkdirAll(filepath.Dir(w.Prefix), 0o755)
		os.WriteFile(w.Prefix, nil, 0o644)
		if err := w.InitPrefix(t.Context()); !errors.Is(err, winex.ErrPrefix) {
			t.Errorf("InitPrefix = %v, want ErrPrefix", err)
		}
	})
	t.Run("relative prefix", func(t *testing.T) {
		w, _ := fakeWine(t)
		w.Prefix = "rel"
		if err := w.InitPrefix(t.Context()); !errors.Is(err, winex.ErrPrefix) {
			t.Errorf("InitPrefix = %v, want ErrPrefix", err)
		}
	})
	t.Run("prefix owned by someone else", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("needs root to give a directory away")
		}
		w, _ := fakeWine(t)
		os.MkdirAll(w.Prefix, 0o755)
		if err := os.Chown(w.Prefix, 4321, 4321); err != nil {
			t.Fatal(err)
		}
		err := w.InitPrefix(t.Context())
		if !errors.Is(err, winex.ErrPrefix) || !strings.Contains(err.Error(), "uid 4321") {
			t.Errorf("InitPrefix = %v, want ErrPrefix naming uid 4321", err)
		}
	})
	t.Run("deadline kills wineboot", func(t *testing.T) {
		w, _ := fakeWine(t)
		slow := filepath.Join(t.TempDir(), "slow")
		os.WriteFile(slow, []byte("#!/bin/sh\nexec sleep 100\n"), 0o755)
		w.Loader = slow
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		err := w.InitPrefix(ctx)
		if !errors.Is(err, winex.ErrPrefix) || !errors.Is(err, winex.ErrKilled) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("InitPrefix = %v, want ErrPrefix, ErrKilled and DeadlineExceeded", err)
		}
	})
}

// A run that Wine aborts at exit with the dynamic loader's assertion is run
// once more.
func TestRunRetriesWineExitCrash(t *testing.T) {
	w, state := fakeWine(t)
	if err := w.InitPrefix(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, err := winex.Run(context.Background(), winex.Cmd{Path: "crashy-exit", Wine: w})
	if err != nil || res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != "ran" {
		t.Fatalf("Run = %+v, %v; want the second run's clean exit", res, err)
	}
	runs := 0
	for _, l := range fakeLog(t, state) {
		if strings.HasPrefix(l, "wine crashy-exit") {
			runs++
		}
	}
	if runs != 2 {
		t.Errorf("%d runs, want 2", runs)
	}
}

// A run that fails having printed nothing is run once more when the Cmd
// says its program always prints, and only then.
func TestRunRetriesSilentStartFailure(t *testing.T) {
	for _, alwaysPrints := range []bool{true, false} {
		w, state := fakeWine(t)
		if err := w.InitPrefix(context.Background()); err != nil {
			t.Fatal(err)
		}
		res, err := winex.Run(context.Background(), winex.Cmd{Path: "silent-start", Wine: w, AlwaysPrints: alwaysPrints})
		runs := 0
		for _, l := range fakeLog(t, state) {
			if strings.HasPrefix(l, "wine silent-start") {
				runs++
			}
		}
		switch {
		case err != nil:
			t.Fatalf("AlwaysPrints %v: Run: %v", alwaysPrints, err)
		case alwaysPrints && (runs != 2 || res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != "started"):
			t.Errorf("AlwaysPrints: %d runs, exit %d, stdout %q; want 2 runs and the second's output", runs, res.ExitCode, res.Stdout)
		case !alwaysPrints && (runs != 1 || res.ExitCode != 1):
			t.Errorf("without AlwaysPrints: %d runs, exit %d; want the one silent failure (exit 1) as it was", runs, res.ExitCode)
		}
	}
}
