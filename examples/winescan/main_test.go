//go:build unix

package main

// Acceptance test of the winescan program: the real binary, run as a user
// runs it. Without PSENGINE_TEST_WINEPREFIX the first run creates the Wine
// prefix under the engine's data directory (10-30 s), as it would on a new
// machine; the later runs reuse it.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/polyswarm/psengine/examples/winescan/internal/winetest"
	"github.com/polyswarm/psengine/psenginetest"
	"github.com/polyswarm/psengine/winex"
)

func TestMain(m *testing.M) {
	if err := winetest.Tag(); err != nil {
		fmt.Fprintln(os.Stderr, "tag:", err)
		os.Exit(1)
	}
	code := m.Run()
	if left := winetest.LeftBehind(5 * time.Second); len(left) > 0 {
		fmt.Fprintln(os.Stderr, "processes left behind:", left)
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

// build builds this program into a temp dir.
func build(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the go tool is needed to build the binary: %v", err)
		}
		t.Skipf("the go tool is needed to build the binary: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "winescan")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// program runs the binary with a given environment.
type program struct {
	bin string
	env []string
}

// run runs the program and returns its stdout, stderr and exit status.
func (p program) run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, args...)
	cmd.Env = p.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 10 * time.Second // Wine's helpers must not hold our pipes
	start := time.Now()
	err := cmd.Run()
	t.Logf("winescan %s: %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	default:
		t.Fatalf("winescan %s: %v\nstderr:\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), errOut.String(), code
}

// wireLine is one line of `analyze --json`.
type wireLine struct {
	Bounty struct {
		ArtifactURI string `json:"artifact_uri"`
	} `json:"bounty"`
	Analysis struct {
		Verdict  string          `json:"verdict"`
		Bid      json.RawMessage `json:"bid"`
		Metadata struct {
			MalwareFamily string   `json:"malware_family"`
			Product       string   `json:"product"`
			Error         string   `json:"error"`
			Comments      []string `json:"comments"`
			Scanner       struct {
				VendorVersion string `json:"vendor_version"`
				Environment   struct {
					OperatingSystem string `json:"operating_system"`
				} `json:"environment"`
			} `json:"scanner"`
		} `json:"metadata"`
	} `json:"analysis"`
}

var vendorVersion = regexp.MustCompile(`^Microsoft Windows \d+(\.\d+){1,3}$`)

func TestAnalyzeAcceptance(t *testing.T) {
	if _, err := winex.Discover(nil); err != nil {
		winetest.Need(t, err)
	}
	bin := build(t)
	root := t.TempDir()
	data := filepath.Join(root, "data")

	// The environment of a user's shell, with the test's prefix or none.
	env := []string{"PSENGINE_DATA_DIR=" + data, "LOG_LEVEL=info"}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "WINEPREFIX" && !strings.HasPrefix(k, "PSENGINE_") && k != "LOG_LEVEL" {
			env = append(env, kv)
		}
	}
	prefix := filepath.Join(data, "wineprefix")
	if os.Getenv(winetest.PrefixVar) == "" {
		// Runs before t.TempDir's removal, after the last run's teardown.
		t.Cleanup(func() { winetest.RemoveServerDir(prefix) })
	}
	if p := os.Getenv(winetest.PrefixVar); p != "" {
		prefix = p
		env = append(env, "WINEPREFIX="+p)
		unlock, err := winetest.Lock(p) // take turns with the other test binaries
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
	}
	p := program{bin: bin, env: env}

	eicar := filepath.Join(root, "dir with spaces", "ünïcødé ☃", "eicar.com")
	if err := os.MkdirAll(filepath.Dir(eicar), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(eicar, psenginetest.EICAR(), 0o600); err != nil {
		t.Fatal(err)
	}
	clean := psenginetest.File(t, "clean file.txt", []byte("nothing to see here\r\n"))

	for _, backend := range []string{"local", "process"} {
		t.Run(backend, func(t *testing.T) { analyzeAcceptance(t, p, backend, prefix, eicar, clean) })
	}
}

// analyzeAcceptance runs `analyze` with its scans in-process, or in worker
// child processes (the winescan binary itself).
func analyzeAcceptance(t *testing.T, p program, backend, prefix, eicar, clean string) {
	stdout, stderr, code := p.run(t, "analyze", "--json", "--backend", backend, eicar, clean)
	if code != 0 {
		t.Fatalf("analyze exit status %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(prefix, "system.reg")); err != nil {
		t.Errorf("no initialised prefix at %s: %v", prefix, err)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("analyze printed %d lines, want 2:\n%s\nstderr:\n%s", len(lines), stdout, stderr)
	}
	var got [2]wireLine
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &got[i]); err != nil {
			t.Fatalf("line %d: %v\n%s", i+1, err, l)
		}
		m := got[i].Analysis.Metadata
		if !vendorVersion.MatchString(m.Scanner.VendorVersion) || m.Product != "winescan-example" {
			t.Errorf("%s: vendor_version %q product %q not stamped", got[i].Bounty.ArtifactURI, m.Scanner.VendorVersion, m.Product)
		}
		if m.Scanner.Environment.OperatingSystem != "linux" {
			t.Errorf("%s: operating_system %q, want linux", got[i].Bounty.ArtifactURI, m.Scanner.Environment.OperatingSystem)
		}
		if m.Error != "" || len(m.Comments) > 0 {
			t.Errorf("%s: answered with a failure: error %q comments %q", got[i].Bounty.ArtifactURI, m.Error, m.Comments)
		}
	}
	if a := got[0].Analysis; got[0].Bounty.ArtifactURI != eicar || a.Verdict != "malicious" || a.Metadata.MalwareFamily != "EICAR-Test-File" {
		t.Errorf("EICAR file answered %+v for %q", a, got[0].Bounty.ArtifactURI)
	}
	if a := got[1].Analysis; got[1].Bounty.ArtifactURI != clean || a.Verdict == "malicious" {
		t.Errorf("clean file answered %+v for %q", a, got[1].Bounty.ArtifactURI)
	}
	for _, want := range []string{"wine prefix ready", "persistent wineserver started", "persistent wineserver stopped"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("logs lack %q:\n%s", want, stderr)
		}
	}
	if backend != "local" {
		return // the commands below run without a backend
	}

	t.Run("commands ver", func(t *testing.T) {
		stdout, stderr, code := p.run(t, "commands", "ver")
		var ver map[string]string
		if code != 0 || json.Unmarshal([]byte(stdout), &ver) != nil {
			t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		if ver["vendor_version"] != got[0].Analysis.Metadata.Scanner.VendorVersion || ver["prefix"] != prefix {
			t.Errorf("ver = %v, want vendor_version %q and prefix %q", ver, got[0].Analysis.Metadata.Scanner.VendorVersion, prefix)
		}
	})

	t.Run("commands scan_file", func(t *testing.T) {
		stdout, stderr, code := p.run(t, "commands", "scan_file", eicar)
		var res struct {
			Header   string `json:"find_header"`
			ExitCode int    `json:"exit_code"`
			Analysis struct {
				Verdict string `json:"verdict"`
			} `json:"analysis"`
		}
		if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil {
			t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		// find.exe upper-cases ASCII letters and prints ☃ (not in code
		// page 1252) as '?'.
		if !strings.HasSuffix(res.Header, `\DIR WITH SPACES\üNïCøDé ?\EICAR.COM`) || res.ExitCode != 0 || res.Analysis.Verdict != "malicious" {
			t.Errorf("scan_file = %+v", res)
		}
	})

	t.Run("commands usage error", func(t *testing.T) {
		_, stderr, code := p.run(t, "commands", "scan_file")
		if code != 1 || !strings.Contains(stderr, "scan_file needs exactly one PATH") {
			t.Errorf("exit %d, stderr:\n%s", code, stderr)
		}
	})

	if left := winetest.LeftBehind(5 * time.Second); len(left) > 0 {
		t.Errorf("wine processes left behind by the program: %v", left)
	}
}
