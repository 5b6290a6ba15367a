//go:build linux

package cli

// The escape test: a scanner that tries, from its sandboxed worker child,
// each thing a compromised parser would, run through `analyze --backend
// process` and through the webhook. Each try must be refused, the bounty
// answered and the engine alive.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
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

	"golang.org/x/sys/unix"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
)

// escapeTargets is the escape scanner's artifact: what to try.
type escapeTargets struct {
	Secret    string // the webhook secret's value, to look for
	SecretDir string // a file in the engine's secrets directory
	Intake    string // the intake store
	Outside   string // a path outside the child's temp directory, to create
	Port      int    // a listening loopback TCP port
	Setuid    string // a setuid-root program printing its /proc/self/status
	ForkMax   int    // how many processes the fork bomb tries to start
}

// escape tries everything escapeTargets says and reports, per try, "refused:
// why" or "ESCAPED: what", in metadata "tries"; "temp" is the control: a
// file in its own temp directory, which must work.
type escape struct{}

func (escape) SandboxNeeds(psengine.Env) psengine.SandboxNeeds {
	return psengine.SandboxNeeds{Env: []string{"CLI_TEST_PROGRAM"}}
}

func (escape) Scan(ctx context.Context, env psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	data, err := a.Bytes()
	if err != nil {
		return psengine.Analysis{}, err
	}
	var t escapeTargets
	if err := json.Unmarshal(data, &t); err != nil {
		return psengine.Analysis{}, err
	}
	tries := map[string]string{}
	verdict := func(name string, err error, what string) {
		if err != nil {
			tries[name] = "refused: " + err.Error()
		} else {
			tries[name] = "ESCAPED: " + what
		}
		env.Logger().Info("escape try", "try", name, "result", tries[name])
	}
	// The environment, and the parent's.
	if v, ok := os.LookupEnv("PSENGINE_WEBHOOK_SECRET"); ok || strings.Contains(strings.Join(os.Environ(), "\n"), t.Secret) {
		tries["env_secret"] = "ESCAPED: " + v
	} else {
		tries["env_secret"] = "refused: not in the environment"
	}
	_, err = os.ReadFile(fmt.Sprintf("/proc/%d/environ", os.Getppid()))
	verdict("parent_environ", err, "read the parent's environment")
	_, err = os.ReadFile(t.SecretDir)
	verdict("secrets_dir", err, "read "+t.SecretDir)
	_, err = os.ReadFile(t.Intake)
	verdict("intake_store", err, "read "+t.Intake)
	err = os.WriteFile(t.Outside, []byte("x"), 0o600)
	verdict("write_outside", err, "wrote "+t.Outside)
	err = os.WriteFile(filepath.Join(env.Dirs().Data, "planted"), []byte("x"), 0o600)
	verdict("write_data", err, "wrote in the data directory")
	if f, err := os.CreateTemp("", "control-"); err != nil {
		tries["temp"] = "failed: " + err.Error()
	} else {
		tries["temp"] = "ok"
		_ = f.Close()
		_ = os.Remove(f.Name())
	}
	conn, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(t.Port))
	if err == nil {
		conn.Close()
	}
	verdict("tcp_connect", err, "connected to the loopback port")
	err = unix.PtraceAttach(os.Getppid())
	verdict("ptrace_parent", err, "attached to the parent")
	err = unix.Kill(os.Getppid(), syscall.SIGUSR2) // the parent would die of it
	verdict("signal_parent", err, "signalled the parent")
	err = unix.Unshare(unix.CLONE_NEWUSER)
	verdict("unshare_user", err, "made a user namespace")
	err = unix.Mount("none", env.Dirs().Temp, "tmpfs", 0, "")
	verdict("mount", err, "mounted a tmpfs")
	env.Logger().Info("escape try: setuid")
	tries["setuid"] = trySetuid(ctx, t.Setuid)
	env.Logger().Info("escape try", "try", "setuid", "result", tries["setuid"])
	tries["fork_bomb"] = tryForkBomb(t.ForkMax)
	env.Logger().Info("escape try", "try", "fork_bomb", "result", tries["fork_bomb"])
	return psengine.Analysis{Verdict: psengine.Benign, Metadata: psengine.Metadata{Extra: map[string]any{"tries": tries}}}, nil
}

// trySetuid runs the setuid-root program and says whether it gained
// anything: a uid or a capability.
func trySetuid(ctx context.Context, path string) string {
	out, err := exec.CommandContext(ctx, path, "/proc/self/status").Output()
	if err != nil {
		return "refused: " + err.Error()
	}
	var uids []string
	capEff := ""
	for line := range strings.SplitSeq(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			uids = strings.Fields(v)
		}
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			capEff = strings.TrimSpace(v)
		}
	}
	if len(uids) < 2 || capEff == "" {
		return "failed: no status: " + string(out)
	}
	if uids[1] != strconv.Itoa(os.Getuid()) || strings.Trim(capEff, "0") != "" {
		return fmt.Sprintf("ESCAPED: euid %s, CapEff %s", uids[1], capEff)
	}
	return fmt.Sprintf("refused: euid %s, CapEff %s", uids[1], capEff)
}

// tryForkBomb starts sleeping processes until one fails or max run, then
// kills them.
func tryForkBomb(max int) string {
	var started []*exec.Cmd
	start := time.Now()
	defer func() {
		for _, c := range started {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}()
	for range max {
		c := exec.Command("/bin/sleep", "10") // outlives the bomb; anything holding on it ends soon
		if err := c.Start(); err != nil {
			return fmt.Sprintf("refused: after %d processes (%v): %v", len(started), time.Since(start).Round(time.Millisecond), err)
		}
		started = append(started, c)
	}
	return fmt.Sprintf("ESCAPED: %d processes", len(started))
}

// escapeRig is a home for the escape engine: the secrets and state the
// child must not read, the setuid program, a listening port.
type escapeRig struct {
	tmp, home string
	exe       string // this test binary, where the children's user can run it
	targets   escapeTargets
}

const escapeSecret = "s3cret-the-child-must-not-see"

// newEscapeRig makes the rig; the engine's children are to run as user
// ("": the engine's). Unless webhook, it fakes the intake store, which the
// webhook makes itself.
func newEscapeRig(t *testing.T, user string, webhook bool) *escapeRig {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the escape test runs as root in CI (setuid program, --sandbox-user)")
		}
		t.Skip("needs root: a setuid-root program, --sandbox-user")
	}
	tmp := t.TempDir()
	r := &escapeRig{tmp: tmp, home: filepath.Join(tmp, "home")}
	for _, d := range []string{"secrets", "state", "share", "elsewhere"} {
		if err := os.MkdirAll(filepath.Join(r.home, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r.exe = exe
	if user != "" { // the other user's child must reach its directories and run this program
		for _, d := range []string{tmp, r.home, filepath.Dir(tmp)} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		bin, err := os.ReadFile(exe)
		if err != nil {
			t.Fatal(err)
		}
		r.exe = filepath.Join(tmp, "escape.test")
		if err := os.WriteFile(r.exe, bin, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secretFile := filepath.Join(r.home, "secrets", "token")
	intake := filepath.Join(r.home, "state", "intake.db")
	for _, f := range []string{secretFile, intake} {
		if webhook && f == intake {
			continue
		}
		if err := os.WriteFile(f, []byte("private"), 0o644); err != nil { // readable by anyone but for the sandbox
			t.Fatal(err)
		}
	}
	if webhook { // the webhook refuses a secrets directory others can read: the sandbox must refuse its root child
		if err := os.Chmod(filepath.Join(r.home, "secrets"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(secretFile, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cat, err := os.ReadFile("/bin/cat")
	if err != nil {
		t.Fatal(err)
	}
	setuid := filepath.Join(r.home, "share", "setuid-cat")
	if err := os.WriteFile(setuid, cat, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(setuid, 0o4755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	r.targets = escapeTargets{Secret: escapeSecret, SecretDir: secretFile, Intake: intake,
		Outside: filepath.Join(r.home, "elsewhere", "planted"), Port: ln.Addr().(*net.TCPAddr).Port,
		Setuid: setuid, ForkMax: 3000}
	return r
}

// command is the escape engine's command line.
func (r *escapeRig) command(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(r.exe, args...)
	cmd.Env = append(os.Environ(), "CLI_TEST_PROGRAM=escape", "TMPDIR="+r.tmp, "PSENGINE_HOME="+r.home,
		"PSENGINE_WEBHOOK_SECRET="+escapeSecret, "LOG_LEVEL=info")
	return cmd
}

// check fails the test for each try that was not refused.
func (r *escapeRig) check(t *testing.T, answer map[string]any, stderr string) {
	t.Helper()
	meta, _ := answer["metadata"].(map[string]any)
	tries, _ := meta["tries"].(map[string]any)
	want := []string{"env_secret", "parent_environ", "secrets_dir", "intake_store", "write_outside", "write_data",
		"tcp_connect", "ptrace_parent", "signal_parent", "unshare_user", "mount", "setuid", "fork_bomb"}
	if len(tries) != len(want)+1 {
		t.Fatalf("answer %v: want the %d tries and the control; stderr:\n%s", answer, len(want), stderr)
	}
	for _, name := range want {
		got, _ := tries[name].(string)
		if !strings.HasPrefix(got, "refused: ") {
			t.Errorf("%s: %s", name, got)
		} else {
			t.Logf("%s: %s", name, got)
		}
	}
	if tries["temp"] != "ok" {
		t.Errorf("the control, a file in the child's own temp directory: %v", tries["temp"])
	}
	if _, err := os.Stat(r.targets.Outside); err == nil {
		t.Errorf("%s was created", r.targets.Outside)
	}
	if !strings.Contains(stderr, "worker children are sandboxed") {
		t.Errorf("the engine did not log what the sandbox enforces; stderr:\n%s", stderr)
	}
}

func TestEscapeAnalyze(t *testing.T) {
	for _, user := range []string{"", "nobody"} {
		t.Run("user="+user, func(t *testing.T) {
			r := newEscapeRig(t, user, false)
			artifact := filepath.Join(r.home, "share", "targets.json")
			data, _ := json.Marshal(r.targets)
			if err := os.WriteFile(artifact, data, 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"analyze", "--json", "--backend", "process", "--timeout", "120s", artifact}
			if user != "" {
				args = append(args, "--sandbox-user", user)
			}
			cmd := r.command(t, args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("analyze: %v; stderr:\n%s", err, stderr.String())
			}
			var l struct{ Analysis map[string]any }
			if err := json.Unmarshal(stdout.Bytes(), &l); err != nil {
				t.Fatalf("output %q: %v", stdout.String(), err)
			}
			if l.Analysis["verdict"] != "benign" {
				t.Fatalf("answer %v; stderr:\n%s", l.Analysis, stderr.String())
			}
			r.check(t, l.Analysis, stderr.String())
			t.Log(firstLine(stderr.String(), "worker children are sandboxed"))
		})
	}
}

func TestEscapeWebhook(t *testing.T) {
	r := newEscapeRig(t, "", true)
	var mu sync.Mutex
	answers := make(chan map[string]any, 1)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var a map[string]any
		_ = json.NewDecoder(req.Body).Decode(&a)
		mu.Lock()
		defer mu.Unlock()
		answers <- a
	}))
	defer receiver.Close()
	cmd := r.command(t, "webhook", "--backend", "process", "--allow-private", "-p", "0", "--addr", "127.0.0.1", "--timeout", "120s")
	stdout, _ := cmd.StdoutPipe()
	var stderr psenginetest.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	base := listeningURL(t, stdout, &stderr)
	data, _ := json.Marshal(r.targets)
	b := psenginetest.Bounty(data, psenginetest.WithID("escape-1"), psenginetest.WithResponseURL(receiver.URL),
		psenginetest.WithExpiration(time.Now().Add(3*time.Minute)))
	if code := postBounty(t, base, b, "delivery-escape", escapeSecret); code != http.StatusAccepted {
		t.Fatalf("status %d; stderr:\n%s", code, stderr.String())
	}
	var answer map[string]any
	select {
	case answer = <-answers:
	case <-time.After(200 * time.Second):
		t.Fatalf("no answer; stderr:\n%s", stderr.String())
	}
	// The engine is alive: it answers /healthz... and a second bounty.
	b2 := psenginetest.Bounty(data, psenginetest.WithID("escape-2"), psenginetest.WithResponseURL(receiver.URL),
		psenginetest.WithExpiration(time.Now().Add(3*time.Minute)))
	if code := postBounty(t, base, b2, "delivery-escape-2", escapeSecret); code != http.StatusAccepted {
		t.Fatalf("second bounty: status %d; stderr:\n%s", code, stderr.String())
	}
	select {
	case <-answers:
	case <-time.After(200 * time.Second):
		t.Fatalf("no answer to the second bounty; stderr:\n%s", stderr.String())
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("webhook exit: %v; stderr:\n%s", err, stderr.String())
	}
	r.check(t, answer, stderr.String())
}

// firstLine is the first line of s containing sub.
func firstLine(s, sub string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if strings.Contains(sc.Text(), sub) {
			return sc.Text()
		}
	}
	return ""
}
