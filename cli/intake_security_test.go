package cli

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
)

// intakeProgram is a program whose webhook takes its environment from env
// and, with --backend fake, queues on an in-process broker.
func intakeProgram(env map[string]string) (*Program, *fakeBackend) {
	backend := &fakeBackend{broker: broker.NewMemory(broker.MemoryConfig{})}
	return &Program{
		Name: "test",
		Scanner: psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
			return psengine.Analysis{Verdict: psengine.Benign}, nil
		}),
		Backends: map[string]Backend{"fake": backend},
		Getenv:   func(k string) string { return env[k] },
	}, backend
}

// running is a command started by startCommand.
type running struct {
	lines  *bufio.Reader // its stdout
	stderr *psenginetest.SyncBuffer
	cancel context.CancelFunc
	code   chan int
}

func startCommand(t *testing.T, p *Program, args ...string) *running {
	t.Helper()
	out, stdout := io.Pipe()
	r := &running{lines: bufio.NewReader(out), stderr: &psenginetest.SyncBuffer{}, code: make(chan int, 1)}
	p.Stdout, p.Stderr = stdout, r.stderr
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		c := p.Run(ctx, args)
		stdout.Close()
		r.code <- c
	}()
	return r
}

// line reads the next stdout line, which must start with prefix, and
// returns the rest; "" and false when the command ended first.
func (r *running) line(t *testing.T, prefix string) (string, bool) {
	t.Helper()
	l, err := r.lines.ReadString('\n')
	if err != nil {
		return "", false
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(l), prefix)
	if !ok {
		t.Fatalf("line %q, want %q...", l, prefix)
	}
	return rest, true
}

// stop ends the command and checks it exits 0.
func (r *running) stop(t *testing.T) {
	t.Helper()
	go func() { _, _ = io.Copy(io.Discard, r.lines) }()
	stopRun(t, r.cancel, r.code, r.stderr)
}

// failed waits for the command to exit and returns its status.
func (r *running) failed(t *testing.T) int {
	t.Helper()
	go func() { _, _ = io.Copy(io.Discard, r.lines) }()
	defer r.cancel()
	return <-r.code
}

func writeFile(t *testing.T, path, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // whatever the umask
		t.Fatal(err)
	}
}

func testBounty(id string) psengine.Bounty {
	return psenginetest.Bounty([]byte("x"), psenginetest.WithID(id), psenginetest.WithResponseURL("https://api.polyswarm.test/answer/"+id))
}

// --secret-file: the secret is the file's content less its newline, the
// webhook listens on loopback unless told otherwise, and nothing warns.
func TestWebhookSecretFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "webhook.secret")
	writeFile(t, file, "s3cret\n", 0o600)
	p, backend := intakeProgram(nil)
	r := startCommand(t, p, "webhook", "--backend", "fake", "-p", "0", "--secret-file", file)
	base, ok := r.line(t, "listening on ")
	if !ok {
		t.Fatalf("the webhook did not start: %s", r.stderr)
	}
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Errorf("listening on %s without --addr, want 127.0.0.1", base)
	}
	if code := postBounty(t, base, testBounty("1"), "d-1", "s3cret"); code != http.StatusAccepted {
		t.Errorf("bounty signed with the file's secret: %d, want 202", code)
	}
	if code := postBounty(t, base, testBounty("2"), "d-2", "s3cret\n"); code != http.StatusUnauthorized {
		t.Errorf("bounty signed with the secret and its newline: %d, want 401", code)
	}
	r.stop(t)
	if n := backend.broker.Len(); n != 1 {
		t.Errorf("%d bounties queued, want 1", n)
	}
	if strings.Contains(r.stderr.String(), "--secret") {
		t.Errorf("a warning about --secret with --secret-file:\n%s", r.stderr)
	}
}

// --secret on the command line works, with a warning that ps shows it.
func TestWebhookSecretFlagWarns(t *testing.T) {
	p, _ := intakeProgram(nil)
	r := startCommand(t, p, "webhook", "--backend", "fake", "-p", "0", "--secret", "s3cret")
	base, ok := r.line(t, "listening on ")
	if !ok {
		t.Fatalf("the webhook did not start: %s", r.stderr)
	}
	if code := postBounty(t, base, testBounty("1"), "d-1", "s3cret"); code != http.StatusAccepted {
		t.Errorf("bounty: %d, want 202", code)
	}
	r.stop(t)
	if want := "every user of this machine can read it in the process list (ps)"; !strings.Contains(r.stderr.String(), want) {
		t.Errorf("no warning %q:\n%s", want, r.stderr)
	}
}

// A secret file others can read stops the webhook before it listens,
// naming the file and the fix.
func TestWebhookRefusesOpenSecretFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "webhook.secret")
	writeFile(t, file, "s3cret\n", 0o644)
	p, _ := intakeProgram(nil)
	r := startCommand(t, p, "webhook", "--backend", "fake", "-p", "0", "--secret-file", file)
	if _, ok := r.line(t, "listening on "); ok {
		t.Fatal("the webhook listens with a world-readable secret file")
	}
	if code := r.failed(t); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if want := file + ": mode 0644 is too open"; !strings.Contains(r.stderr.String(), want) ||
		!strings.Contains(r.stderr.String(), "fix: chmod 600 "+file) {
		t.Errorf("stderr %q, want %q and the fix", r.stderr, want)
	}
}

// Acceptance (issue #19): an engine's runtime directory others can use
// (0777) stops the webhook before it listens, with a message naming the
// directory and the fix; so do the worker and a secrets directory
// holding a file others can read. A missing runtime directory is created,
// 0700.
func TestServicesRefuseOpenDirectories(t *testing.T) {
	home := t.TempDir()
	run := filepath.Join(home, "run")
	env := map[string]string{"PSENGINE_HOME": home, "PSENGINE_WEBHOOK_SECRET": "s"}

	p, _ := intakeProgram(env)
	r := startCommand(t, p, "webhook", "-p", "0")
	if _, ok := r.line(t, "listening on "); !ok {
		t.Fatalf("the webhook did not start: %s", r.stderr)
	}
	r.stop(t)
	if fi, err := os.Stat(run); err != nil || fi.Mode().Perm() != 0o700 || !fi.IsDir() {
		t.Fatalf("runtime directory after the first start: %v, %v; want a directory, mode 0700", fi, err)
	}

	if err := os.Chmod(run, 0o777); err != nil {
		t.Fatal(err)
	}
	want := "runtime directory: " + run + ": mode 0777 lets the group or others write in it, want 0700 (fix: chmod 700 " + run + ")"
	for _, args := range [][]string{{"webhook", "-p", "0"}, {"worker", "--backend", "fake"}} {
		p, _ := intakeProgram(env)
		r := startCommand(t, p, args...)
		if _, ok := r.line(t, "listening on "); ok {
			t.Fatalf("%q listens with a runtime directory of mode 0777", args)
		}
		if code := r.failed(t); code != 1 || !strings.Contains(r.stderr.String(), want) {
			t.Errorf("%q: exit %d, stderr %q; want 1 and %q", args, code, r.stderr, want)
		}
	}

	if err := os.Chmod(run, 0o700); err != nil {
		t.Fatal(err)
	}
	secrets := filepath.Join(home, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	licence := filepath.Join(secrets, "licence.key")
	writeFile(t, licence, "k", 0o666)
	p, _ = intakeProgram(env)
	r = startCommand(t, p, "webhook", "-p", "0")
	if _, ok := r.line(t, "listening on "); ok {
		t.Fatal("the webhook listens with a secret file of mode 0666")
	}
	if code := r.failed(t); code != 1 || !strings.Contains(r.stderr.String(), licence) ||
		!strings.Contains(r.stderr.String(), "fix: chmod 600 "+licence) {
		t.Errorf("exit %d, stderr %q; want 1 naming %s and the fix", code, r.stderr, licence)
	}
}

// --metrics-addr :PORT serves on loopback: every interface only when the
// address says so.
func TestMetricsAddrWithoutHostIsLoopback(t *testing.T) {
	p, _ := intakeProgram(map[string]string{"PSENGINE_WEBHOOK_SECRET": "s"})
	r := startCommand(t, p, "webhook", "--backend", "fake", "-p", "0", "--metrics-addr", ":0")
	metrics, ok := r.line(t, "metrics on ")
	if !ok {
		t.Fatalf("the webhook did not start: %s", r.stderr)
	}
	if !strings.HasPrefix(metrics, "http://127.0.0.1:") {
		t.Errorf("metrics on %s for --metrics-addr :0, want 127.0.0.1", metrics)
	}
	if _, ok := r.line(t, "listening on "); !ok {
		t.Fatalf("the webhook did not start: %s", r.stderr)
	}
	r.stop(t)
}

func TestWebhookSecretUsage(t *testing.T) {
	file := filepath.Join(t.TempDir(), "s")
	writeFile(t, file, "s", 0o600)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"webhook", "--secret", "s", "--secret-file", file}, "not both"},
		{[]string{"webhook", "--secret", "s", "--addr", ""}, "--addr: give a host"},
		{[]string{"webhook", "--secret", "s", "--reads-per-source", "0"}, "--reads-per-source must be at least 1"},
		{[]string{"webhook"}, "--secret-file"},
	} {
		var stderr bytes.Buffer
		p, _ := intakeProgram(nil)
		p.Stderr, p.Stdout = &stderr, io.Discard
		if code := p.Run(context.Background(), tt.args); code != 2 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%q: status %d, stderr %q; want 2 and %q", tt.args, code, stderr.String(), tt.want)
		}
	}
}
