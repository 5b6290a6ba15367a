package winex_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/polyswarm/psengine/winex"
)

func TestPersistentForever(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{nil, false},                  // started on demand (upstream Wine)
		{[]string{"-p0"}, false},      // started on demand through Debian's wrapper
		{[]string{"-p0", "-p"}, true}, // `wineserver -p` through Debian's wrapper
		{[]string{"-p"}, true},
		{[]string{"-p", "-p5"}, false},
		{[]string{"--persistent"}, true},
		{[]string{"--persistent=30"}, false},
		{[]string{"-fp"}, true},
		{[]string{"-d2", "-p"}, true},
		{[]string{"-p", "--", "-p3"}, true},
		{[]string{"-k"}, false},
	} {
		if got := winex.PersistentForever(tc.args); got != tc.want {
			t.Errorf("persistentForever(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

// An engine starting while a persistent wineserver serves its prefix (an
// operator's `wineserver -p`; here the tests' own) is told so at once,
// not after waiting 10 s for it to exit; KillServer stops it whoever
// started it.
func TestWineStartServerFindsPersistentServer(t *testing.T) {
	w := needWine(t)
	if runtime.GOOS != "linux" {
		t.Skip("finding the server reads /proc")
	}
	ctx := testCtx(t, 3*time.Minute)
	info, ok := w.RunningServer()
	if !ok || !info.Persistent || info.PID <= 0 {
		t.Fatalf("RunningServer = %+v, %v: want the persistent server the tests started", info, ok)
	}
	other := &winex.Wine{Loader: w.Loader, Server: w.Server, PathCmd: w.PathCmd, Prefix: w.Prefix}
	start := time.Now()
	err := other.StartServer(ctx)
	if took := time.Since(start); !errors.Is(err, winex.ErrServerRunning) || took > 3*time.Second {
		t.Fatalf("StartServer beside a persistent server = %v after %v, want ErrServerRunning at once", err, took)
	}
	// Runs use the server that is there: fast.
	res, err := winex.Run(ctx, other.Command("cmd", "/c", "exit", "3"))
	if err != nil || res.ExitCode != 3 {
		t.Fatalf("run beside the shared server: %+v, %v", res, err)
	}
	if err := other.StopServer(ctx); err != nil { // not its own: nothing stopped
		t.Fatal(err)
	}
	if info2, ok := w.RunningServer(); !ok || info2.PID != info.PID {
		t.Fatalf("StopServer of a server not started stopped it: %+v, %v", info2, ok)
	}

	killed, err := other.KillServer(ctx)
	if err != nil || !killed {
		t.Fatalf("KillServer = %v, %v; want a server killed", killed, err)
	}
	if info, ok := w.RunningServer(); ok {
		t.Fatalf("a server still runs after KillServer: %+v", info)
	}
	if killed, err := other.KillServer(ctx); err != nil || killed {
		t.Errorf("KillServer with none running = %v, %v; want false, nil", killed, err)
	}
	// Restore the tests' server: w still thinks it runs one.
	if err := w.StopServer(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.StartServer(context.WithoutCancel(ctx)); err != nil {
		t.Fatal(err)
	}
	if info, ok := w.RunningServer(); !ok || !info.Persistent {
		t.Errorf("after restart: %+v, %v", info, ok)
	}
}
