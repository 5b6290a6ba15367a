//go:build linux

package child_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/polyswarm/psengine/internal/child"
	"go.uber.org/goleak"
)

// command is what the tests ask of the child.
type command struct {
	Op   string
	Text string
	Code int
}

type reply struct {
	Text string
	Pid  int
}

func TestMain(m *testing.M) {
	if c, ok, err := child.Attach("child-test"); ok {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(9)
		}
		serve(c)
		return
	}
	if os.Getenv("CHILD_TEST_MIDDLE") != "" {
		middle()
		return
	}
	goleak.VerifyTestMain(m)
}

// serve is the child: it answers commands until its input ends. Like the
// engine's children, it reads the control stream meanwhile (whose end
// means the parent is gone).
func serve(c *child.Conn) {
	go func() {
		for {
			var cmd command
			if err := c.RecvControl(&cmd); err != nil {
				return
			}
		}
	}()
	for {
		var cmd command
		if err := c.Recv(&cmd); err != nil {
			os.Exit(0) // retired
		}
		switch cmd.Op {
		case "echo":
			_ = c.Send(reply{Text: strings.ToUpper(cmd.Text), Pid: os.Getpid()})
		case "print":
			fmt.Println("to stdout:", cmd.Text)
			fmt.Fprintln(os.Stderr, "to stderr:", cmd.Text)
			_ = c.Send(reply{})
		case "exit":
			os.Exit(cmd.Code)
		case "spawn": // a descendant in the child's process group
			sleeper := exec.Command("sleep", "1000")
			if err := sleeper.Start(); err != nil {
				_ = c.Send(reply{Text: err.Error()})
				continue
			}
			_ = c.Send(reply{Pid: sleeper.Process.Pid})
		case "hang":
			select {}
		}
	}
}

// middle is a parent that starts a child, has it start a descendant,
// prints both pids and waits to be killed.
func middle() {
	p, err := child.Start(child.Config{Name: "child-test", Args: []string{"-test.run=^$"}})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	var r reply
	if err = p.Send(command{Op: "spawn"}); err == nil {
		err = p.Recv(&r)
	}
	if err != nil || r.Pid == 0 {
		fmt.Println("error", err, r.Text)
		os.Exit(1)
	}
	fmt.Println(p.Pid(), r.Pid)
	select {}
}

func start(t *testing.T, output func(int, string)) *child.Process {
	t.Helper()
	p, err := child.Start(child.Config{Name: "child-test", Args: []string{"-test.run=^$"}, Output: output})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill(); _ = p.Wait() })
	return p
}

func TestSendRecv(t *testing.T) {
	p := start(t, nil)
	for _, s := range []string{"a", "hello", strings.Repeat("x", 1<<20)} {
		if err := p.Send(command{Op: "echo", Text: s}); err != nil {
			t.Fatal(err)
		}
		var r reply
		if err := p.Recv(&r); err != nil {
			t.Fatal(err)
		}
		if r.Text != strings.ToUpper(s) || r.Pid != p.Pid() {
			t.Fatalf("reply %.20q from %d, want %.20q from %d", r.Text, r.Pid, strings.ToUpper(s), p.Pid())
		}
	}
	if rss, err := p.RSS(); err != nil || rss < 1<<20 {
		t.Errorf("RSS = %d, %v; want a few MiB", rss, err)
	}
	if err := p.CloseInput(); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Errorf("a retired child exits cleanly; got %v", err)
	}
	var r reply
	if err := p.Recv(&r); !child.IsGone(err) {
		t.Errorf("Recv after exit = %v, want a gone error", err)
	}
}

func TestOutputLines(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	p := start(t, func(pid int, line string) {
		mu.Lock()
		lines = append(lines, fmt.Sprint(pid, " ", line))
		mu.Unlock()
	})
	if err := p.Send(command{Op: "print", Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	var r reply
	if err := p.Recv(&r); err != nil {
		t.Fatal(err)
	}
	_ = p.CloseInput()
	_ = p.Wait() // the output is read to its end before Wait returns
	mu.Lock()
	defer mu.Unlock()
	got := strings.Join(lines, "|")
	pid := fmt.Sprint(p.Pid(), " ")
	if !strings.Contains(got, pid+"to stdout: hi") || !strings.Contains(got, pid+"to stderr: hi") {
		t.Errorf("lines %q, want both the stdout and the stderr line, with the child's pid", lines)
	}
}

func TestExitStatus(t *testing.T) {
	p := start(t, nil)
	_ = p.Send(command{Op: "exit", Code: 3})
	var ee *child.ExitError
	if err := p.Wait(); !errors.As(err, &ee) || ee.Code != 3 || ee.Pid != p.Pid() {
		t.Fatalf("Wait = %v, want exit status 3", err)
	}
	var r reply
	if err := p.Recv(&r); !child.IsGone(err) {
		t.Errorf("Recv = %v, want a gone error", err)
	}
}

// Kill reaches the child's descendants too: nothing is left behind.
func TestKillGroup(t *testing.T) {
	p := start(t, nil)
	_ = p.Send(command{Op: "spawn"})
	var r reply
	if err := p.Recv(&r); err != nil || r.Pid == 0 {
		t.Fatalf("spawn: %v %q", err, r.Text)
	}
	_ = p.Send(command{Op: "hang"})
	p.Kill()
	var ee *child.ExitError
	if err := p.Wait(); !errors.As(err, &ee) || ee.Signal != syscall.SIGKILL {
		t.Fatalf("Wait = %v, want killed by SIGKILL", err)
	}
	waitGone(t, r.Pid)
}

// A child dies with its parent, even when the parent is killed with
// SIGKILL, and so does what the child started.
func TestParentDeath(t *testing.T) {
	exe, _ := os.Executable()
	mid := exec.Command(exe, "-test.run=^$")
	mid.Env = append(os.Environ(), "CHILD_TEST_MIDDLE=1")
	out, _ := mid.StdoutPipe()
	if err := mid.Start(); err != nil {
		t.Fatal(err)
	}
	var pid, descendant int
	if _, err := fmt.Fscan(out, &pid, &descendant); err != nil || pid == 0 || descendant == 0 {
		_ = mid.Process.Kill()
		_ = mid.Wait()
		t.Fatalf("middle did not report its child and the child's descendant: %v", err)
	}
	_ = mid.Process.Kill()
	_ = mid.Wait()
	waitGone(t, pid)
	waitGone(t, descendant)
}

// While its parent lives, a child ignores SIGTERM, SIGINT and SIGHUP (a
// service manager stopping the whole control group): the parent decides
// when it ends.
func TestSignalsIgnoredWhileParentLives(t *testing.T) {
	p := start(t, nil)
	echo := func(s string) error {
		if err := p.Send(command{Op: "echo", Text: s}); err != nil {
			return err
		}
		var r reply
		return p.Recv(&r)
	}
	if err := echo("ready"); err != nil { // Attach has run
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		if err := syscall.Kill(p.Pid(), sig); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if err := echo(sig.String()); err != nil {
			t.Fatalf("after %v: %v", sig, err)
		}
	}
	_ = p.CloseInput()
	if err := p.Wait(); err != nil {
		t.Errorf("the child, retired after the signals, exited with %v", err)
	}
}

// waitGone waits until pid is no longer a live process (gone, or a zombie
// nobody reaps).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	t.Errorf("process %d still alive: %s", pid, st)
}

func startB(b *testing.B) (*child.Process, error) {
	return child.Start(child.Config{Name: "child-test", Args: []string{"-test.run=^$"}})
}
