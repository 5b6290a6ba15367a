package main

// Acceptance tests of the clamav program (run in-process through the
// shared CLI) against a real clamd on the test's own signatures.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/examples/clamav/engine"
	"github.com/polyswarm/psengine/examples/clamav/internal/clamdtest"
	"github.com/polyswarm/psengine/psenginetest"
)

func TestMain(m *testing.M) {
	// Re-executed as the program (benchmarks), or as a worker child of such
	// a run: a sandboxed child's environment has no runProgramEnv, and its
	// arguments are the program's, not a test's.
	programChild := psengine.IsWorkerChild() && !slices.ContainsFunc(os.Args[1:], func(a string) bool { return strings.HasPrefix(a, "-test.") })
	if os.Getenv(runProgramEnv) == "1" || programChild {
		program(os.Getenv).Main()
	}
	goleak.VerifyTestMain(m)
}

// run runs the program with CLAMD_ADDRESS=addr and returns its exit status,
// stdout and stderr.
func run(t *testing.T, addr string, args ...string) (int, string, string) {
	return runWith(t, addr, nil, args...)
}

// runWith is run with extra engine options.
func runWith(t *testing.T, addr string, opts []psengine.Option, args ...string) (int, string, string) {
	return runEnv(t, map[string]string{"CLAMD_ADDRESS": addr}, opts, args...)
}

// runEnv is run with these environment variables (beside a home and temp
// dir of the test's, and LOG_LEVEL=error) and extra engine options.
func runEnv(t *testing.T, vars map[string]string, opts []psengine.Option, args ...string) (int, string, string) {
	t.Helper()
	home := t.TempDir()
	env := map[string]string{"PSENGINE_HOME": home, "TMPDIR": home, "LOG_LEVEL": "error"}
	maps.Copy(env, vars)
	p := program(func(k string) string { return env[k] })
	p.Options = append(p.Options, opts...)
	var stdout, stderr bytes.Buffer
	p.Stdout, p.Stderr = &stdout, &stderr
	code := p.Run(context.Background(), args)
	return code, stdout.String(), stderr.String()
}

type line struct {
	Bounty   psengine.Bounty `json:"bounty"`
	Analysis psengine.Answer `json:"analysis"`
}

func parseLines(t *testing.T, out string) []line {
	t.Helper()
	var lines []line
	for _, s := range strings.Split(strings.TrimSpace(out), "\n") {
		var l line
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			t.Fatalf("output line %q: %v", s, err)
		}
		lines = append(lines, l)
	}
	return lines
}

// `clamav analyze --json` over the 44 clamav-testfiles, EICAR, a
// hash-signed generated file and a clean file.
func TestAnalyzeTestfiles(t *testing.T) {
	for _, backend := range []string{"local", "process"} {
		t.Run(backend, func(t *testing.T) { analyzeTestfiles(t, backend) })
	}
}

// analyzeTestfiles runs the scans in-process, or in worker child processes
// (this test binary, re-executed to serve the engine: it starts no daemon
// of its own).
func analyzeTestfiles(t *testing.T, backend string) {
	var opts []psengine.Option
	if backend == "process" {
		if psenginetest.InChild() {
			program(os.Getenv).Run(context.Background(), nil) // serves the parent, then exits
		}
		opts = append(opts, psenginetest.ProcessWorkers(t, psengine.ProcessConfig{}))
	}
	cfg := clamdtest.StandardSignatures(t)
	generated := make([]byte, 2048)
	_, _ = rand.Read(generated)
	cfg.Hashes["PsTest.Generated"] = generated
	d := clamdtest.StartDaemon(t, cfg)

	dir := t.TempDir()
	eicar := filepath.Join(dir, "eicar.com")
	gen := filepath.Join(dir, "generated.bin")
	clean := filepath.Join(dir, "clean.txt")
	for p, data := range map[string][]byte{eicar: psenginetest.EICAR(), gen: generated, clean: []byte("just text\n")} {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	testfiles := clamdtest.Testfiles(t)
	signed := append(slices.Clone(testfiles), eicar, gen)
	ref := d.Reference(t, append(slices.Clone(signed), clean)...)
	if _, ok := ref[clean]; ok {
		t.Fatalf("clamscan detects the clean file: %v", ref[clean])
	}

	code, out, errOut := runWith(t, d.Address.String(), opts, append([]string{"analyze", "--json"}, append(signed, clean)...)...)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	lines := parseLines(t, out)
	if len(lines) != len(signed)+1 {
		t.Fatalf("%d lines for %d artifacts", len(lines), len(signed)+1)
	}
	for i, path := range signed {
		l := lines[i]
		if l.Bounty.ArtifactURI != path {
			t.Fatalf("line %d is for %s, want %s", i, l.Bounty.ArtifactURI, path)
		}
		want := ref[path]
		if want == "" {
			t.Fatalf("clamscan does not detect %s on the test database", path)
		}
		if a := l.Analysis; a.Verdict != psengine.Malicious || a.Metadata.MalwareFamily != want || a.Bid <= 0 {
			t.Errorf("%s: %s %q bid %d, want malicious %q", path, a.Verdict, a.Metadata.MalwareFamily, a.Bid, want)
		}
	}
	if a := lines[len(lines)-1].Analysis; a.Verdict != psengine.Benign && a.Verdict != psengine.Unknown {
		t.Errorf("clean file: %s", a.Verdict)
	}
	if m := lines[0].Analysis.Metadata; m.Product != "clamav" || m.Scanner.VendorVersion == "" {
		t.Errorf("head not in the answers: %+v", m)
	}
}

func TestCommands(t *testing.T) {
	d := clamdtest.StartDaemon(t, clamdtest.StandardSignatures(t))
	addr := d.Address.String()

	code, out, errOut := run(t, addr, "commands")
	if code != 0 || !strings.Contains(out, "info") || !strings.Contains(out, "scan_file") {
		t.Errorf("commands: exit %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = run(t, addr, "commands", "info")
	if code != 0 {
		t.Fatalf("commands info: exit %d: %s", code, errOut)
	}
	var info engine.Info
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("info output %q: %v", out, err)
	}
	if info.Address != addr || info.Ping != "PONG" || info.VendorVersion == "" || !strings.HasPrefix(info.Version, "ClamAV "+info.VendorVersion) {
		t.Errorf("info = %+v", info)
	}

	eicar := psenginetest.File(t, "eicar.com", psenginetest.EICAR())
	ref := d.Reference(t, eicar)
	code, out, errOut = run(t, addr, "commands", "scan_file", eicar)
	if code != 0 {
		t.Fatalf("commands scan_file: exit %d: %s", code, errOut)
	}
	var reports []engine.FileReport
	if err := json.Unmarshal([]byte(out), &reports); err != nil {
		t.Fatalf("scan_file output %q: %v", out, err)
	}
	want := []engine.FileReport{{Path: eicar, Result: "FOUND", Signature: ref[eicar], Verdict: psengine.Malicious}}
	if diff := cmp.Diff(want, reports); diff != "" {
		t.Errorf("scan_file (-want +got):\n%s", diff)
	}
}

// Without clamd: analyze answers unknown (exit 0: an answer was given),
// commands fail with a one-line message; a bad address stops the program.
func TestClamdDown(t *testing.T) {
	addr := "unix:" + clamdtest.ShortTempDir(t) + "/none.sock"
	file := psenginetest.File(t, "x.txt", []byte("x"))
	code, out, errOut := run(t, addr, "analyze", "--json", file)
	if code != 0 {
		t.Fatalf("analyze with clamd down: exit %d: %s", code, errOut)
	}
	if l := parseLines(t, out); l[0].Analysis.Verdict != psengine.Unknown || !strings.Contains(l[0].Analysis.Metadata.Error, "unreachable") {
		t.Errorf("analyze with clamd down: %+v", l[0].Analysis)
	}
	code, _, errOut = run(t, addr, "commands", "info")
	if code != 1 || !strings.Contains(errOut, "unreachable") || strings.Contains(errOut, "goroutine") {
		t.Errorf("commands info with clamd down: exit %d: %q", code, errOut)
	}
	code, _, errOut = run(t, "localhost:3310", "analyze", file)
	if code != 1 || !strings.Contains(errOut, "bad address") || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
		t.Errorf("bad address: exit %d: %q", code, errOut)
	}
}
