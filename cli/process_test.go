//go:build linux

package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
	"go.uber.org/goleak"
)

// TestMain lets the test binary run as an engine program: with
// CLI_TEST_PROGRAM=crashy it is the "crashy" engine's command line (and,
// through the process backend's marker, its worker children); with
// CLI_TEST_PROGRAM=counter, the "counter" engine's (see durable_test.go).
func TestMain(m *testing.M) {
	switch os.Getenv("CLI_TEST_PROGRAM") {
	case "crashy":
		(&Program{Name: "crashy", Scanner: childProgram{crashy}}).Main()
	case "counter":
		(&Program{Name: "counter", Scanner: childProgram{counter}}).Main()
	case "escape":
		(&Program{Name: "escape", Scanner: escape{}}).Main()
	}
	goleak.VerifyTestMain(m)
}

// childProgram is a test program's scanner, which declares what its
// sandboxed children need: the variables that make this test binary the
// program and configure it, and the directory of the counter's scan log.
type childProgram struct{ psengine.Scanner }

func (childProgram) SandboxNeeds(psengine.Env) psengine.SandboxNeeds {
	needs := psengine.SandboxNeeds{Env: []string{"CLI_TEST_PROGRAM", "CLI_TEST_GATE", "CLI_TEST_SCANS", "CLI_TEST_SCAN_TIME",
		"CLI_TEST_POISON", "CLI_TEST_POISON_GATE", "CLI_TEST_STARTS"}}
	if f := os.Getenv("CLI_TEST_SCANS"); f != "" {
		needs.Write = append(needs.Write, filepath.Dir(f))
	}
	return needs
}

// crashy misbehaves as its artifact says, and otherwise answers benign
// with its process id in metadata "pid".
var crashy = psengine.ScannerFunc(func(ctx context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	b, _ := a.Bytes()
	switch strings.TrimSpace(string(b)) {
	case "panic in a goroutine":
		go func() { panic("scanner bug in a goroutine") }()
		time.Sleep(time.Minute)
	case "exit":
		os.Exit(7)
	case "sigkill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Minute)
	case "hang":
		select {} // ignores ctx
	case "allocate":
		var hog [][]byte
		for range 64 { // 512 MiB, touched
			chunk := make([]byte, 8<<20)
			for i := 0; i < len(chunk); i += 4096 {
				chunk[i] = 1
			}
			hog = append(hog, chunk)
		}
		time.Sleep(time.Minute)
		return psengine.Analysis{Verdict: psengine.Malicious, Metadata: psengine.Metadata{Heuristic: len(hog) > 0}}, nil
	}
	return psengine.Analysis{Verdict: psengine.Benign, Metadata: psengine.Metadata{Extra: map[string]any{"pid": os.Getpid()}}}, nil
})

// misbehaviours are the artifacts that crash, hang or bloat a child.
var misbehaviours = []string{"panic in a goroutine", "exit", "sigkill", "hang", "allocate"}

// crashyCommand is the crashy engine's command line with args, its temp
// files under tmp.
func crashyCommand(t *testing.T, tmp string, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "CLI_TEST_PROGRAM=crashy", "TMPDIR="+tmp, "PSENGINE_HOME="+tmp+"/home", "LOG_LEVEL=warn")
	return cmd
}

// checkLeftovers fails the test if a child pid still exists or tmp holds
// anything but the engine's home.
func checkLeftovers(t *testing.T, pids map[int]bool, tmp string) {
	t.Helper()
	for pid := range pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			t.Errorf("worker child %d still exists (running, orphaned or a zombie)", pid)
		}
	}
	entries, _ := os.ReadDir(tmp)
	for _, e := range entries {
		if e.Name() != "home" {
			t.Errorf("left in TMPDIR: %s", e.Name())
		}
	}
}

// `analyze --backend process`: each misbehaving artifact costs only itself
// (answered unknown), every other one is answered by a child, and nothing
// is left behind.
func TestAnalyzeProcessBackendSurvivesCrashes(t *testing.T) {
	tmp, inputs := t.TempDir(), t.TempDir()
	var args []string
	var names []string
	for i, bad := range misbehaviours {
		for _, content := range []string{bad, fmt.Sprintf("fine %d", i)} {
			path := fmt.Sprintf("%s/%02d", inputs, len(names))
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			args = append(args, path)
			names = append(names, content)
		}
	}
	files := args
	// Three workers: the hanging scan and the allocating one (held until
	// the deadline and the memory limit end them) never leave a fine
	// artifact without a worker, whatever the machine's load; every
	// artifact's deadline starts when analyze reads it.
	args = append([]string{"analyze", "--json", "--backend", "process", "--workers", "3", "--timeout", "4s", "--max-child-memory", "256M"}, files...)
	cmd := crashyCommand(t, tmp, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("analyze: %v\nstderr:\n%s", err, stderr.String())
	}
	pids := map[int]bool{}
	sc := bufio.NewScanner(&stdout)
	i := 0
	for sc.Scan() {
		var line struct {
			Bounty   psengine.Bounty
			Analysis struct {
				Verdict  psengine.Verdict
				Metadata map[string]any
			}
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, sc.Bytes())
		}
		if i >= len(names) {
			t.Fatalf("more lines than artifacts: %s", sc.Bytes())
		}
		if line.Bounty.ArtifactURI != files[i] {
			t.Errorf("line %d is for %s, want %s (argument order)", i, line.Bounty.ArtifactURI, files[i])
		}
		if strings.HasPrefix(names[i], "fine") {
			pid, _ := line.Analysis.Metadata["pid"].(float64)
			if line.Analysis.Verdict != psengine.Benign || pid == 0 || int(pid) == cmd.Process.Pid {
				t.Errorf("%s: %s from pid %v, want benign from a child", names[i], line.Analysis.Verdict, pid)
			}
			pids[int(pid)] = true
		} else if line.Analysis.Verdict != psengine.Unknown {
			t.Errorf("%s: %s, want unknown", names[i], line.Analysis.Verdict)
		}
		i++
	}
	if i != len(names) {
		t.Fatalf("%d answers for %d artifacts; stderr:\n%s", i, len(names), stderr.String())
	}
	checkLeftovers(t, pids, tmp)
}

// `webhook --backend process`: the same through the webhook, answers
// POSTed to their response URLs, and the server drained on SIGTERM.
func TestWebhookProcessBackendSurvivesCrashes(t *testing.T) {
	tmp := t.TempDir()
	var mu sync.Mutex
	answers := map[string]map[string]any{}
	got := make(chan struct{}, 16)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a map[string]any
		_ = json.NewDecoder(r.Body).Decode(&a)
		mu.Lock()
		answers[strings.TrimPrefix(r.URL.Path, "/")] = a
		mu.Unlock()
		got <- struct{}{}
	}))
	defer receiver.Close()

	cmd := crashyCommand(t, tmp, "webhook", "--backend", "process", "--insecure", "--allow-private", "-p", "0",
		"--workers", "3", "--timeout", "4s", "--max-child-memory", "256M") // see TestAnalyzeProcessBackendSurvivesCrashes
	stdout, _ := cmd.StdoutPipe()
	var stderr psenginetest.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	base := listeningURL(t, stdout, &stderr)

	var names []string
	for i, bad := range misbehaviours {
		names = append(names, bad, fmt.Sprintf("fine %d", i))
	}
	for i, name := range names {
		b := psenginetest.Bounty([]byte(name), psenginetest.WithID(strconv.Itoa(i+1)),
			psenginetest.WithResponseURL(fmt.Sprintf("%s/%d", receiver.URL, i+1)),
			psenginetest.WithExpiration(time.Now().Add(time.Minute)))
		if code := postBounty(t, base, b, "delivery-"+strconv.Itoa(i), ""); code != http.StatusAccepted {
			t.Fatalf("bounty %q: status %d", name, code)
		}
	}
	for range names {
		select {
		case <-got:
		case <-time.After(time.Minute):
			t.Fatalf("only some answers came; stderr:\n%s", stderr.String())
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("webhook exit: %v; stderr:\n%s", err, stderr.String())
	}
	pids := map[int]bool{}
	mu.Lock()
	defer mu.Unlock()
	for i, name := range names {
		a := answers[strconv.Itoa(i+1)]
		if strings.HasPrefix(name, "fine") {
			meta, _ := a["metadata"].(map[string]any)
			pid, _ := meta["pid"].(float64)
			if a["verdict"] != "benign" || pid == 0 {
				t.Errorf("%s: answer %v, want benign from a child", name, a)
			}
			pids[int(pid)] = true
		} else if a["verdict"] != "unknown" {
			t.Errorf("%s: answer %v, want unknown", name, a)
		}
	}
	if !strings.Contains(stderr.String(), "child_pid") {
		t.Errorf("no child's output logged with its pid; stderr:\n%s", stderr.String())
	}
	checkLeftovers(t, pids, tmp)
}

// `analyze --workers 1 --max-tasks-per-child 2`: eight artifacts are
// scanned in at least four children, none in the parent.
func TestAnalyzeMaxTasksPerChild(t *testing.T) {
	tmp, inputs := t.TempDir(), t.TempDir()
	args := []string{"analyze", "--json", "--backend", "process", "--workers", "1", "--max-tasks-per-child", "2"}
	for i := range 8 {
		path := fmt.Sprintf("%s/fine-%d", inputs, i)
		if err := os.WriteFile(path, fmt.Appendf(nil, "fine %d", i), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, path)
	}
	cmd := crashyCommand(t, tmp, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("analyze: %v\nstderr:\n%s", err, stderr.String())
	}
	pids := map[int]int{}
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var line struct {
			Analysis struct{ Metadata map[string]any }
		}
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		pid, _ := line.Analysis.Metadata["pid"].(float64)
		pids[int(pid)]++
	}
	if len(pids) < 4 || pids[cmd.Process.Pid] > 0 || pids[0] > 0 {
		t.Errorf("scans per pid %v: want at least 4 children and none in the parent (%d)", pids, cmd.Process.Pid)
	}
	checkLeftovers(t, map[int]bool{}, tmp)
}
