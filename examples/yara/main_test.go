package main

// Acceptance tests of the yara program: in-process through the shared CLI,
// and the built binary for the exit status of a broken rules file.

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/examples/yara/libyara"
	"github.com/polyswarm/psengine/psenginetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// needLibyara skips without libyara, or fails under CI=true.
func needLibyara(t testing.TB) {
	t.Helper()
	if !libyara.Available {
		if os.Getenv("CI") == "true" {
			t.Fatal("built without libyara (apt-get install libyara-dev; no -tags nolibyara)")
		}
		t.Skip("built without libyara (apt-get install libyara-dev)")
	}
}

func need(t *testing.T, programs ...string) {
	t.Helper()
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is needed: %v", p, err)
			}
			t.Skipf("%s is needed: %v", p, err)
		}
	}
}

const rules = `
rule Tester_Rule : tester
{
  meta:
    family = "TesterFamily"
    severity = 3
  strings:
    $a = "TESTER-MARKER"
  condition:
    $a
}
`

// run runs the program in-process with env and returns its exit status,
// stdout and stderr.
func run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	return runWith(t, env, nil, args...)
}

// runWith is run with extra engine options.
func runWith(t *testing.T, env map[string]string, opts []psengine.Option, args ...string) (int, string, string) {
	t.Helper()
	home := t.TempDir()
	full := map[string]string{"PSENGINE_HOME": home, "TMPDIR": home, "LOG_LEVEL": "error"}
	for k, v := range env {
		full[k] = v
	}
	p := program(func(k string) string { return full[k] })
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

func TestAnalyzeByTheTestersRules(t *testing.T) {
	needLibyara(t)
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "tester.yar")
	hit := filepath.Join(dir, "hit.bin")
	miss := filepath.Join(dir, "miss.txt")
	for p, data := range map[string]string{rulesFile: rules, hit: "xx TESTER-MARKER xx", miss: "nothing"} {
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, backend := range []string{"local", "process"} {
		t.Run(backend, func(t *testing.T) { analyzeByTheTestersRules(t, backend, rulesFile, hit, miss) })
	}
}

// analyzeByTheTestersRules runs the scans in-process, or in worker child
// processes (this test binary, re-executed to serve the engine).
func analyzeByTheTestersRules(t *testing.T, backend, rulesFile, hit, miss string) {
	var opts []psengine.Option
	if backend == "process" {
		if psenginetest.InChild() {
			program(os.Getenv).Run(context.Background(), nil) // serves the parent, then exits
		}
		opts = append(opts, psenginetest.ProcessWorkers(t, psengine.ProcessConfig{}))
	}
	for _, noMatch := range []string{"", "benign"} {
		code, out, errOut := runWith(t, map[string]string{"YARA_RULES": rulesFile, "YARA_NO_MATCH": noMatch}, opts, "analyze", "--json", hit, miss)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var lines []line
		for _, s := range strings.Split(strings.TrimSpace(out), "\n") {
			var l line
			if err := json.Unmarshal([]byte(s), &l); err != nil {
				t.Fatalf("line %q: %v", s, err)
			}
			lines = append(lines, l)
		}
		if len(lines) != 2 {
			t.Fatalf("%d lines: %s", len(lines), out)
		}
		m := lines[0].Analysis
		if m.Verdict != psengine.Malicious || m.Metadata.MalwareFamily != "Tester_Rule" || m.Bid <= 0 {
			t.Errorf("hit: %+v", m)
		}
		y, _ := json.Marshal(m.Metadata.Extra["yara"])
		if want := `{"count":1,"rules":[{"meta":{"family":"TesterFamily","severity":3},"name":"Tester_Rule","score":75,"tags":["tester"]}]}`; string(y) != want {
			t.Errorf("yara metadata %s, want %s", y, want)
		}
		wantMiss := psengine.Unknown
		if noMatch == "benign" {
			wantMiss = psengine.Benign
		}
		if v := lines[1].Analysis.Verdict; v != wantMiss {
			t.Errorf("YARA_NO_MATCH=%q: miss is %s, want %s", noMatch, v, wantMiss)
		}
	}
}

// A broken rules file: the real binary exits non-zero with one clear line
// per artifact naming the file, and no panic trace.
func TestBrokenRulesExit(t *testing.T) {
	needLibyara(t)
	need(t, "go")
	dir := t.TempDir()
	bin := filepath.Join(dir, "yara-engine")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	broken := filepath.Join(dir, "broken.yar")
	if err := os.WriteFile(broken, []byte("rule Broken {\n  strings:\n    $a = \"x\"\n  condition:\n    true\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sample := psenginetest.File(t, "sample", []byte("x"))
	for _, args := range [][]string{{"analyze", sample}, {"commands", "info"}, {"update"}} {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "YARA_RULES="+broken, "PSENGINE_HOME="+dir, "LOG_LEVEL=error")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() == 0 {
			t.Fatalf("%v with broken rules: %v, want a non-zero exit", args, err)
		}
		msg := stderr.String()
		if !strings.Contains(msg, broken+":6: ") || !strings.Contains(msg, "unreferenced string") ||
			strings.Contains(msg, "panic") || strings.Contains(msg, "goroutine") || stdout.Len() != 0 {
			t.Errorf("%v: exit %d, stderr %q, stdout %q", args, ee.ExitCode(), msg, stdout.String())
		}
	}
}

func TestCommandsWithoutBounty(t *testing.T) {
	needLibyara(t)
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "tester.yar")
	if err := os.WriteFile(rulesFile, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	hit := psenginetest.File(t, "hit", []byte("TESTER-MARKER"))
	code, out, errOut := run(t, map[string]string{"YARA_RULES": rulesFile}, "commands", "scan_file", hit)
	if code != 0 || !strings.Contains(out, `"name": "Tester_Rule"`) || !strings.Contains(out, `"verdict": "malicious"`) {
		t.Errorf("scan_file: exit %d\n%s%s", code, out, errOut)
	}
}
