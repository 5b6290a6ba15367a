package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/examples/winescan/engine"
	"github.com/polyswarm/psengine/examples/winescan/internal/winetest"
	"github.com/polyswarm/psengine/psenginetest"
	"github.com/polyswarm/psengine/winex"
)

// The Wine tests share one initialised prefix, made on first use (10-30 s)
// and removed at the end, or the one CI exports in PSENGINE_TEST_WINEPREFIX.
// Each test's engine starts and stops its own persistent wineserver, as in
// production; every process the tests start carries a tag, and none may be
// left alive at the end.
var (
	prefixOnce sync.Once
	prefix     *winetest.Prefix
	prefixErr  error
)

func TestMain(m *testing.M) {
	if err := winetest.Tag(); err != nil {
		fmt.Fprintln(os.Stderr, "tag:", err)
		os.Exit(1)
	}
	code := m.Run()
	// Close waits for the wineserver that the last scans without a
	// persistent server (TestWithoutSetup) started on demand, which outlives
	// them by seconds, before releasing a shared prefix: the left-behind
	// check below then sees only processes that should not exist.
	if prefix != nil {
		if err := prefix.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing the test prefix:", err)
			code = 1
		}
	}
	if left := winetest.LeftBehind(5 * time.Second); len(left) > 0 {
		fmt.Fprintln(os.Stderr, "wine processes left behind:", left)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// needPrefix returns the test prefix's directory; without Wine it skips
// (fails under CI=true).
func needPrefix(tb testing.TB) string {
	tb.Helper()
	prefixOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		prefix, prefixErr = winetest.NewPrefix(ctx)
	})
	winetest.Need(tb, prefixErr)
	return prefix.Wine.Prefix
}

// getenv returns os.Getenv with the given variables replaced.
func getenv(kv ...string) func(string) string {
	return func(k string) string {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == k {
				return kv[i+1]
			}
		}
		return os.Getenv(k)
	}
}

// scannerFor is the engine on the given prefix.
func scannerFor(prefix string) engine.Scanner {
	return engine.Scanner{Getenv: getenv("WINEPREFIX", prefix)}
}

// testDirs are base directories under the test's temp dir.
func testDirs(t *testing.T) envdirs.Dirs {
	root := t.TempDir()
	return envdirs.Dirs{
		Home: root, Data: filepath.Join(root, "share"), Temp: t.TempDir(), TempPrefix: "winescan-",
	}
}

// logBuffer collects an engine's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startEngine starts an engine over s and shuts it down when the test ends.
func startEngine(t *testing.T, s engine.Scanner, opts ...psengine.Option) (*psengine.Engine, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	opts = append([]psengine.Option{
		psengine.WithName("winescan"), psengine.WithWorkers(4), psengine.WithDirs(testDirs(t)),
		psengine.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))),
	}, opts...)
	e := psengine.New(s, opts...)
	t.Cleanup(func() { shutdown(t, e) })
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := e.Start(ctx); err != nil {
		t.Fatalf("Start: %v\nlogs:\n%s", err, logs)
	}
	return e, logs
}

func shutdown(t *testing.T, e *psengine.Engine) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// writeFile writes data at dir/rel, creating the directories.
func writeFile(t *testing.T, dir, rel string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func withMarker(before, after string) []byte {
	return append(append([]byte(before), psenginetest.EICAR()...), after...)
}

func TestConformance(t *testing.T) {
	if psenginetest.InChild() {
		// A worker child of the "answers/process" subtest: its Env (the
		// prefix included) comes from the parent, which holds the shared
		// prefix's lock; it must not wait for that lock.
		psenginetest.TestScanner(t, engine.Scanner{}, nil, psengine.WithName("winescan"))
	}
	p := needPrefix(t)
	psenginetest.TestScanner(t, scannerFor(p), []psenginetest.Case{
		{Name: "EICAR test file", Data: psenginetest.EICAR(), Want: psengine.Malicious},
		{Name: "EICAR string inside text", Data: withMarker("first line\r\nsay ", " twice\r\nlast\r\n"), Want: psengine.Malicious},
		{Name: "clean text", Data: []byte("nothing to see here\n"), Want: psengine.Benign},
		{Name: "url", URL: "http://example.com/x"},
	}, psengine.WithName("winescan"), psengine.WithDirs(testDirs(t)))
}

// TestEngine drives one engine through setup, scans of awkward paths,
// concurrent scans, the commands and teardown.
func TestEngine(t *testing.T) {
	p := needPrefix(t)
	e, logs := startEngine(t, scannerFor(p))
	ownServer := strings.Contains(logs.String(), "persistent wineserver started")
	if !ownServer && !strings.Contains(logs.String(), "using the persistent wineserver already serving the prefix") {
		t.Fatalf("setup logged neither starting nor sharing a wineserver:\n%s", logs)
	}
	if ownServer && !hasTagged("wineserver") {
		t.Errorf("setup logged a persistent wineserver, but none of ours runs: %v", winetest.Tagged())
	}

	t.Run("head", func(t *testing.T) {
		h := e.Env().Head()
		if h.Product != engine.Product || h.Scanner.Version != engine.Version {
			t.Errorf("head product %q version %q", h.Product, h.Scanner.Version)
		}
		if !vendorVersion.MatchString(h.Scanner.VendorVersion) {
			t.Errorf("vendor_version %q does not match %v", h.Scanner.VendorVersion, vendorVersion)
		}
		if h.Scanner.Environment.OperatingSystem != runtime.GOOS {
			t.Errorf("operating_system %q, want the host's %q", h.Scanner.Environment.OperatingSystem, runtime.GOOS)
		}
	})

	dir := t.TempDir()
	eicar := psenginetest.EICAR()
	files := []struct {
		rel  string
		data []byte
		want psengine.Verdict
	}{
		{"dir with spaces/ünïcødé ☃/eicar.com", eicar, psengine.Malicious},
		{"dir with spaces/ünïcødé ☃/clean.txt", []byte("clean\r\n"), psengine.Benign},
		{"émoji 😀 and 日本/eicar.com", eicar, psengine.Malicious},
		{"look-alike ā/eicar.com", eicar, psengine.Malicious},
		{"colon: and question?/eicar.com", eicar, psengine.Malicious}, // ToWindows refuses: scanned as a copy
		{"trailing dot./eicar.com.", eicar, psengine.Malicious},       // find.exe cannot open: scanned as a copy
		{"CON", eicar, psengine.Malicious},                            // a device name for Windows
		{"two lines.txt", withMarker("a\n", "\nb\n"), psengine.Malicious},
		{"marker after NUL.bin", withMarker("\x00", "\n"), psengine.Benign}, // find.exe's line ends at NUL
		{"empty", nil, psengine.Benign},
	}
	for _, f := range files {
		t.Run("path "+f.rel, func(t *testing.T) {
			path := writeFile(t, dir, f.rel, f.data)
			res, err := e.Analyze(t.Context(), path)
			if err != nil {
				t.Fatalf("Analyze: %v", err)
			}
			a := res.Analysis
			if a.Verdict != f.want {
				t.Fatalf("verdict %q, want %q (analysis %+v)", a.Verdict, f.want, a)
			}
			if a.Metadata.Error != "" || len(a.Metadata.Comments) > 0 {
				t.Errorf("analysis carries an error: %+v", a.Metadata)
			}
			if f.want == psengine.Malicious && a.Metadata.MalwareFamily != engine.Family {
				t.Errorf("family %q, want %q", a.Metadata.MalwareFamily, engine.Family)
			}
			if a.Metadata.Scanner.VendorVersion == "" || a.Bid == 0 {
				t.Errorf("answer not stamped or not bid: %+v", a)
			}
		})
	}

	t.Run("concurrent", func(t *testing.T) {
		var paths []string
		var want []psengine.Verdict
		for i := range 16 {
			data, v := []byte(fmt.Sprintf("clean %d\n", i)), psengine.Benign
			if i%2 == 0 {
				data, v = withMarker(fmt.Sprintf("%d ", i), "\n"), psengine.Malicious
			}
			paths = append(paths, writeFile(t, dir, fmt.Sprintf("concurrent/%02d ü.txt", i), data))
			want = append(want, v)
		}
		start := time.Now()
		results := e.AnalyzeAll(t.Context(), paths)
		t.Logf("16 files with 4 workers in %v", time.Since(start))
		for i, res := range results {
			if res.Err != nil || res.Analysis.Verdict != want[i] {
				t.Errorf("%s: verdict %q err %v, want %q", paths[i], res.Analysis.Verdict, res.Err, want[i])
			}
		}
	})

	t.Run("scan_file", func(t *testing.T) {
		path := writeFile(t, dir, "cmd/dossier à scanner/eicar.com", eicar)
		out, err := e.Command(t.Context(), "scan_file", []string{path})
		if err != nil {
			t.Fatalf("scan_file: %v", err)
		}
		got := toJSONMap(t, out)
		win := "Z:" + strings.ReplaceAll(path, "/", `\`)
		want := map[string]any{
			"path": path, "windows_path": win, "find_header": asciiUpper(win),
			"exit_code": 0.0, "matching_lines": 1.0,
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("scan_file %s = %v, want %v", k, got[k], v)
			}
		}
		a := got["analysis"].(map[string]any)
		meta := a["metadata"].(map[string]any)
		if a["verdict"] != "malicious" || meta["malware_family"] != engine.Family || meta["product"] != engine.Product {
			t.Errorf("scan_file analysis %v", a)
		}

		for _, args := range [][]string{nil, {path, path}, {dir}, {filepath.Join(dir, "missing")}} {
			if out, err := e.Command(t.Context(), "scan_file", args); err == nil {
				t.Errorf("scan_file %q = %v, want an error", args, out)
			}
		}
	})

	t.Run("ver", func(t *testing.T) {
		out, err := e.Command(t.Context(), "ver", nil)
		if err != nil {
			t.Fatalf("ver: %v", err)
		}
		got := out.(map[string]string)
		if got["vendor_version"] != e.Env().Head().Scanner.VendorVersion || got["prefix"] != p ||
			!strings.Contains(got["output"], "Microsoft Windows") {
			t.Errorf("ver = %v", got)
		}
		if _, err := e.Command(t.Context(), "ver", []string{"x"}); err == nil {
			t.Error("ver x: want an error")
		}
	})

	shutdown(t, e)
	if ownServer && !strings.Contains(logs.String(), "persistent wineserver stopped") {
		t.Errorf("teardown did not log stopping the server:\n%s", logs)
	}
	if ownServer {
		if left := winetest.LeftBehind(5 * time.Second); len(left) > 0 {
			t.Errorf("after shutdown, wine processes left: %v", left)
		}
	}
}

// toJSONMap turns a command's result into its JSON object.
func toJSONMap(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// asciiUpper upper-cases ASCII letters only, as find.exe does.
func asciiUpper(s string) string {
	return strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, s)
}

func hasTagged(comm string) bool {
	for _, p := range winetest.Tagged() {
		if strings.HasPrefix(p.Comm, comm) {
			return true
		}
	}
	return false
}

// TestDefaultPrefix: without WINEPREFIX the prefix is "wineprefix" under the
// engine's data directory (here a link to the test prefix, which saves
// creating one).
func TestDefaultPrefix(t *testing.T) {
	p := needPrefix(t)
	dirs := testDirs(t)
	if err := os.MkdirAll(dirs.Data, 0o755); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dirs.Data, "wineprefix")
	if err := os.Symlink(p, want); err != nil {
		t.Fatal(err)
	}
	e, _ := startEngine(t, engine.Scanner{Getenv: getenv("WINEPREFIX", "")}, psengine.WithDirs(dirs))
	out, err := e.Command(t.Context(), "ver", nil)
	if err != nil {
		t.Fatalf("ver: %v", err)
	}
	if got := out.(map[string]string)["prefix"]; got != want {
		t.Errorf("prefix %q, want %q", got, want)
	}
}

// TestSharedServer: when another persistent wineserver serves the prefix
// (an operator's `wineserver -p`), setup uses it at once and teardown leaves
// it running; `commands wineserver-kill` stops it.
func TestSharedServer(t *testing.T) {
	p := needPrefix(t)
	w := &winex.Wine{Loader: prefix.Wine.Loader, Server: prefix.Wine.Server, PathCmd: prefix.Wine.PathCmd, Prefix: p}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := w.StartServer(ctx); err != nil {
		t.Fatalf("StartServer: %v", err)
	}
	defer func() {
		if err := w.StopServer(context.Background()); err != nil {
			t.Errorf("StopServer: %v", err)
		}
	}()
	start := time.Now()
	e, logs := startEngine(t, scannerFor(p))
	// Setup once waited 10 s for the other server to exit; now it takes a
	// `wineserver -p` and a `cmd /c ver` (0.1-0.5 s; 5 s on a loaded machine).
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("engine start beside a persistent server took %v", took)
	}
	if !strings.Contains(logs.String(), "using the persistent wineserver already serving the prefix") {
		t.Errorf("setup did not log sharing the server:\n%s", logs)
	}
	path := writeFile(t, t.TempDir(), "eicar.com", psenginetest.EICAR())
	if res, err := e.Analyze(ctx, path); err != nil || res.Analysis.Verdict != psengine.Malicious {
		t.Errorf("Analyze = %+v, %v; want malicious", res.Analysis, err)
	}
	shutdown(t, e)
	// The other server still serves: a run still works and is quick.
	res, err := winex.Run(ctx, w.Command("cmd", "/c", "exit", "3"))
	if err != nil || res.ExitCode != 3 {
		t.Errorf("run after the engine's teardown: %+v, %v", res, err)
	}
	if strings.Contains(logs.String(), "persistent wineserver stopped") {
		t.Errorf("teardown stopped a server it did not start:\n%s", logs)
	}

	// wineserver-kill stops it, though the engine did not start it.
	info, ok := w.RunningServer()
	if runtime.GOOS == "linux" && (!ok || !info.Persistent) {
		t.Fatalf("RunningServer = %+v, %v; want the other persistent server", info, ok)
	}
	k, _ := startEngine(t, scannerFor(p))
	out, err := k.Command(ctx, "wineserver-kill", nil)
	if err != nil {
		t.Fatalf("wineserver-kill: %v", err)
	}
	got := toJSONMap(t, out)
	if got["stopped"] != true || got["prefix"] != p || (runtime.GOOS == "linux" && got["pid"] != float64(info.PID)) {
		t.Errorf("wineserver-kill printed %v; want stopped, pid %d", got, info.PID)
	}
	if info, ok := w.RunningServer(); ok {
		t.Errorf("a wineserver still serves the prefix after wineserver-kill: %+v", info)
	}
	if _, err := k.Command(ctx, "wineserver-kill", []string{"extra"}); err == nil {
		t.Error("wineserver-kill with an argument: no error")
	}
}

// TestWithoutSetup: the scan function and the head work with a zero Env
// (as in a test or a debugger), starting Wine on demand.
func TestWithoutSetup(t *testing.T) {
	p := needPrefix(t)
	s := scannerFor(p)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	m, err := s.Describe(ctx, psengine.Env{})
	if err != nil || !vendorVersion.MatchString(m.Scanner.VendorVersion) || m.Product != engine.Product {
		t.Fatalf("Describe = %+v, %v", m, err)
	}
	for _, c := range []struct {
		data []byte
		want psengine.Verdict
	}{{psenginetest.EICAR(), psengine.Malicious}, {[]byte("clean"), psengine.Benign}} {
		a, err := s.Scan(ctx, psengine.Env{}, psenginetest.Artifact(t, c.data))
		if err != nil || a.Verdict != c.want {
			t.Errorf("Scan(%.10q) = %+v, %v; want %q", c.data, a, err, c.want)
		}
	}
}

func TestErrors(t *testing.T) {
	ctx := t.Context()
	art := psenginetest.Artifact(t, psenginetest.EICAR())

	t.Run("no wine", func(t *testing.T) {
		s := engine.Scanner{Getenv: getenv("PATH", "", "WINELOADER", "", "WINESERVER", "")}
		if _, err := s.Scan(ctx, psengine.Env{}, art); !errors.Is(err, winex.ErrNoWine) {
			t.Errorf("Scan: %v, want ErrNoWine", err)
		}
		e := psengine.New(s, psengine.WithDirs(testDirs(t)))
		if err := e.Start(ctx); !errors.Is(err, psengine.ErrSetup) || !errors.Is(err, winex.ErrNoWine) {
			t.Errorf("Start: %v, want ErrSetup and ErrNoWine", err)
		}
		shutdown(t, e)
	})

	t.Run("url artifact", func(t *testing.T) {
		s := engine.Scanner{}
		if _, err := s.Scan(ctx, psengine.Env{}, psenginetest.URLArtifact(t, "http://example.com/")); !errors.Is(err, psengine.ErrUnsupported) {
			t.Errorf("Scan: %v, want ErrUnsupported", err)
		}
		if s.Accepts(psenginetest.URLArtifact(t, "http://example.com/")) || !s.Accepts(art) {
			t.Error("Accepts: want files only")
		}
	})

	t.Run("prefix not initialised", func(t *testing.T) {
		needPrefix(t)
		s := engine.Scanner{Getenv: getenv("WINEPREFIX", filepath.Join(t.TempDir(), "none"))}
		if _, err := s.Scan(ctx, psengine.Env{}, art); !errors.Is(err, winex.ErrPrefix) {
			t.Errorf("Scan: %v, want ErrPrefix", err)
		}
	})

	t.Run("prefix unusable", func(t *testing.T) {
		needPrefix(t)
		file := writeFile(t, t.TempDir(), "not-a-dir", nil)
		e := psengine.New(engine.Scanner{Getenv: getenv("WINEPREFIX", file)}, psengine.WithDirs(testDirs(t)))
		if err := e.Start(ctx); !errors.Is(err, winex.ErrPrefix) {
			t.Errorf("Start: %v, want ErrPrefix", err)
		}
		shutdown(t, e)
	})
}
