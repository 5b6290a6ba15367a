package natsq_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/polyswarm/psengine/psenginetest"
)

// buildBinaries builds a real nats-server (the module's dependency, so no
// install step) and the eicar program with the nats backend into dir.
func buildBinaries(t *testing.T, dir string) (natsServer, eicarBin string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if _, serr := os.Stat(goBin); serr != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("the go command is needed to build nats-server: %v", err)
			}
			t.Skipf("the go command is needed to build nats-server: %v", err)
		}
	}
	cmd := exec.Command(goBin, "build", "-o", dir+string(filepath.Separator), "github.com/nats-io/nats-server/v2", "./examples/eicar")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "nats-server"), filepath.Join(dir, "eicar")
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// process is a child process the test owns: it is killed at the end of
// the test if still running.
type process struct {
	cmd            *exec.Cmd
	stdout, stderr psenginetest.SyncBuffer
	done           chan struct{} // closed when the process has exited
}

func start(t *testing.T, env []string, name string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(name, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait() // the exit status is in ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *process) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s did not exit within %v; stderr:\n%s", p.cmd.Path, within, p.stderr.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

// TestAcceptance is the scenario with real processes on loopback:
// 200 artifacts submitted with `analyze --backend nats` before any worker
// runs; a worker started and killed with SIGKILL half a second later; two
// more workers: all 200 answered correctly, the submitter exits 0.
func TestAcceptance(t *testing.T) {
	bin := t.TempDir()
	built := time.Now()
	natsServer, eicarBin := buildBinaries(t, bin)
	t.Logf("built nats-server and eicar in %v", time.Since(built).Round(time.Millisecond))

	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	server := start(t, nil, natsServer, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", t.TempDir())
	var nc *nats.Conn
	waitFor(t, "nats-server to accept connections", func() bool {
		var err error
		nc, err = nats.Connect(url)
		return err == nil
	})
	defer nc.Close()

	dir := t.TempDir()
	var files, want []string
	for i := range 200 {
		var name string
		if i%4 == 0 {
			name = filepath.Join(dir, fmt.Sprintf("sample-%03d.com", i))
			if err := os.WriteFile(name, psenginetest.EICAR(), 0o600); err != nil {
				t.Fatal(err)
			}
			want = append(want, name+": malicious EICAR-Test-File bid=953125000000000000")
		} else {
			name = filepath.Join(dir, fmt.Sprintf("sample-%03d.txt", i))
			if err := os.WriteFile(name, fmt.Appendf(nil, "harmless file number %d\n", i), 0o600); err != nil {
				t.Fatal(err)
			}
			want = append(want, name+": unknown")
		}
		files = append(files, name)
	}

	env := []string{"PSENGINE_HOME=" + t.TempDir(), "PSENGINE_RUNTIME_DIR=" + t.TempDir(), "LOG_FORMAT=text", "LOG_LEVEL=info"}
	common := []string{"--backend", "nats", "--nats-url", url, "--nats-ack-wait", "5s"}
	began := time.Now()
	analyze := start(t, env, eicarBin, append(append([]string{"analyze", "--in-flight", "200"}, common...), files...)...)

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the 200 bounties to be queued", func() bool {
		st, err := js.Stream(context.Background(), "psengine_jobs")
		if err != nil {
			return false
		}
		info, err := st.Info(context.Background())
		return err == nil && info.State.Msgs == 200
	})

	t.Logf("%v: 200 bounties queued", time.Since(began).Round(time.Millisecond))
	worker := append([]string{"worker", "--workers", "2"}, common...)
	first := start(t, env, eicarBin, worker...)
	<-time.After(500 * time.Millisecond) // the scenario: killed half a second after it started
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.done
	st, err := js.Stream(context.Background(), "psengine_jobs")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(context.Background()); err == nil {
		t.Logf("the first worker was killed with %d of 200 bounties still queued", info.State.Msgs)
	}
	second := start(t, env, eicarBin, worker...)
	third := start(t, env, eicarBin, worker...)

	if code := analyze.wait(t, 3*time.Minute); code != 0 {
		t.Errorf("analyze exited %d; stderr:\n%s", code, analyze.stderr.String())
	}
	t.Logf("%v: analyze exited", time.Since(began).Round(time.Millisecond))
	got := strings.Split(strings.TrimSuffix(analyze.stdout.String(), "\n"), "\n")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("analyze output (-want +got):\n%s", diff)
	}

	for _, w := range []*process{second, third} {
		// A signal before the program's handler is installed would kill it.
		waitFor(t, "the worker to serve", func() bool { return strings.Contains(w.stderr.String(), "worker serving") })
		if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := w.wait(t, time.Minute); code != 0 {
			t.Errorf("worker exited %d; stderr:\n%s", code, w.stderr.String())
		}
	}
	t.Logf("%v: workers stopped", time.Since(began).Round(time.Millisecond))
	answered := strings.Count(second.stderr.String(), "redelivered job was already answered") +
		strings.Count(third.stderr.String(), "redelivered job was already answered")
	t.Logf("redeliveries found already answered (killed between answer and ack): %d", answered)
	nc.Close()
	if err := server.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	server.wait(t, time.Minute)
	t.Logf("%v: server stopped", time.Since(began).Round(time.Millisecond))
}
