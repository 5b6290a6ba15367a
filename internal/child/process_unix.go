//go:build unix

package child

import (
	"bufio"
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a running child. Its methods are safe for concurrent use,
// except Recv, which one goroutine at a time may call.
type Process struct {
	cmd     *exec.Cmd
	conn    *conn
	control *conn    // parent to child only
	output  *os.File // the read end of the child's stdout and stderr

	exited  chan struct{} // closed once the child was reaped
	cleanup func()        // Config.Cleanup
	waitErr error
	mu      sync.Mutex
	reaped  bool
	readers sync.WaitGroup
}

// Start starts a child. It returns once the process runs; the caller then
// exchanges messages with Send and Recv, ends it with CloseInput (the child
// sees the end of its input and retires) or Kill, and always calls Wait.
func Start(cfg Config) (*Process, error) {
	path := cfg.Path
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("child: cannot find this program to re-execute: %w", err)
		}
		path = exe
	}
	args := cfg.Args
	if args == nil {
		args = os.Args[1:]
	}
	toChildR, toChildW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("child: %w", err)
	}
	fromChildR, fromChildW, err := os.Pipe()
	if err != nil {
		closeAll(toChildR, toChildW)
		return nil, fmt.Errorf("child: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		closeAll(toChildR, toChildW, fromChildR, fromChildW)
		return nil, fmt.Errorf("child: %w", err)
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		closeAll(toChildR, toChildW, fromChildR, fromChildW, outR, outW)
		return nil, fmt.Errorf("child: %w", err)
	}
	cmd := exec.Command(path, args...)
	base := cfg.Environ
	if base == nil {
		base = os.Environ()
	}
	cmd.Env = append(append(withoutMarker(base), cfg.Env...), EnvMarker+"="+cfg.Name)
	cmd.Stdin = nil // /dev/null
	cmd.Stdout, cmd.Stderr = outW, outW
	cmd.ExtraFiles = []*os.File{toChildR, fromChildW, ctlR} // the child's fds 3, 4 and 5
	cmd.SysProcAttr = sysProcAttr()
	if c := cfg.Credential; c != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: c.UID, Gid: c.GID, Groups: []uint32{}}
	}
	err = cmd.Start()
	closeAll(toChildR, fromChildW, outW, ctlR) // the child's ends: the child holds them now
	if err != nil {
		closeAll(toChildW, fromChildR, outR, ctlW)
		return nil, fmt.Errorf("child: start %s: %w", path, err)
	}
	// The message pipes in blocking mode (Fd sets it): a goroutine waiting
	// for the child's reply blocks its thread in read(2), which the kernel
	// wakes directly, instead of parking on the poller, which costs several
	// thread wake-ups per message on a busy machine.
	fromChildR.Fd()
	toChildW.Fd()
	ctlW.Fd()
	p := &Process{cmd: cmd, conn: newConn(fromChildR, toChildW), control: newConn(nil, ctlW), output: outR, exited: make(chan struct{}), cleanup: cfg.Cleanup}
	p.readers.Go(func() {
		readLines(outR, func(line string) {
			if cfg.Output != nil {
				cfg.Output(cmd.Process.Pid, line)
			}
		})
	})
	go p.reap()
	return p, nil
}

func closeAll(files ...*os.File) {
	for _, f := range files {
		_ = f.Close()
	}
}

// withoutMarker drops an inherited marker: a child of a child is not one.
func withoutMarker(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, EnvMarker+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// readLines passes each line of r to fn until r ends.
func readLines(r io.Reader, fn func(string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20) // longer lines are cut
	for sc.Scan() {
		fn(strings.TrimRight(sc.Text(), "\r"))
	}
}

// reap waits for the child to exit, kills what is left of its process
// group (descendants it started), and lets the output reader finish: the
// descendants may hold the output pipe, so it is closed shortly after.
func (p *Process) reap() {
	err := p.cmd.Wait()
	p.mu.Lock()
	p.reaped = true
	p.waitErr = exitError(p.cmd.Process.Pid, err)
	p.mu.Unlock()
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) // ESRCH: nothing left
	_ = p.conn.closeOut()
	_ = p.control.closeOut()
	done := make(chan struct{})
	go func() { p.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(100 * time.Millisecond):
		_ = p.output.Close()
		<-done
	}
	_ = p.output.Close()
	_ = p.conn.in.Close()
	if p.cleanup != nil {
		p.cleanup()
	}
	close(p.exited)
}

// Pid returns the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Send sends v to the child.
func (p *Process) Send(v any) error { return p.conn.send(v) }

// Recv receives the child's next value into v. Once the child is gone it
// returns an error for which IsGone is true.
func (p *Process) Recv(v any) error { return p.conn.recv(v) }

// SendControl sends v to the child on the control stream, apart from the
// messages: a child reads it (Conn.RecvControl) even while it is busy with
// a message (to cancel it, say).
func (p *Process) SendControl(v any) error {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(v); err != nil {
		return err
	}
	return p.control.send(controlFrame{Payload: buf.Bytes()})
}

// CloseInput ends the child's input: a child that reads it sees io.EOF and
// retires (tears down and exits). The control stream stays open until the
// child has exited: its end tells a child that its parent is gone.
func (p *Process) CloseInput() error {
	_ = p.control.send(controlFrame{Retire: true}) // first: the child's input ends after it
	return p.conn.closeOut()
}

// Kill kills the child's whole process group at once (SIGKILL): the child
// and everything it started that stayed in its group.
func (p *Process) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.reaped { // the group id is still ours
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// Exited is closed once the child has exited and was reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Wait waits for the child to exit and returns how it ended: nil for a
// clean exit, else an *ExitError.
func (p *Process) Wait() error {
	<-p.exited
	return p.waitErr
}

// RSS returns the child's resident memory in bytes (Linux: from
// /proc/PID/statm); elsewhere an error.
func (p *Process) RSS() (int64, error) { return rss(p.cmd.Process.Pid) }

// ExitError says how a child ended other than by a clean exit.
type ExitError struct {
	Pid    int
	Code   int            // exit status, -1 when killed by a signal
	Signal syscall.Signal // the signal that killed it, when Code is -1
}

func (e *ExitError) Error() string {
	if e.Code >= 0 {
		return fmt.Sprintf("child %d exited with status %d", e.Pid, e.Code)
	}
	return fmt.Sprintf("child %d was killed by signal %d (%s)", e.Pid, int(e.Signal), e.Signal)
}

func exitError(pid int, err error) error {
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return fmt.Errorf("child %d: %w", pid, err)
	}
	out := &ExitError{Pid: pid, Code: ee.ExitCode()}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		out.Code, out.Signal = -1, ws.Signal()
	}
	return out
}

// Attach returns the child's end of the message stream when this process
// was started by Start for the engine name; ok is false otherwise (an
// ordinary start). It removes the marker from the environment, so that
// programs the child starts are not children themselves.
func Attach(name string) (c *Conn, ok bool, err error) {
	v, set := os.LookupEnv(EnvMarker)
	if !set || v != name {
		return nil, false, nil
	}
	_ = os.Unsetenv(EnvMarker)
	for _, fd := range []int{3, 4, 5} {
		syscall.CloseOnExec(fd) // programs the child starts must not hold the streams
	}
	// The descriptors come in blocking mode: a read blocks its thread,
	// which the kernel wakes directly when the parent writes.
	in, out, ctl := os.NewFile(3, "from-parent"), os.NewFile(4, "to-parent"), os.NewFile(5, "control")
	if in == nil || out == nil || ctl == nil {
		return nil, true, errors.New("child: started as a worker child without its pipes (fds 3, 4 and 5)")
	}
	c = &Conn{c: newConn(in, out), control: newConn(ctl, nil), ppid: os.Getppid(),
		ctl: make(chan []byte, 16), retired: make(chan struct{})}
	go c.watchControl()
	// Caught from now on, before Attach returns: a signal that came before
	// the goroutine ran would otherwise end the child.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go c.obeyParent(sigs)
	return c, true, nil
}

// obeyParent makes the end of a child its parent's decision. SIGTERM,
// SIGINT and SIGHUP are ignored while the parent lives (a service manager
// signalling its whole control group at stop must not kill the scans the
// parent is draining). Once the parent is gone, the child kills its whole
// process group: itself and what its scanner started, which would
// otherwise outlive a parent killed with SIGKILL. The end of the control
// stream says so (see RecvControl); so does, on Linux, the parent-death
// signal (SIGTERM), after which the parent's pid is watched for a second,
// as a multi-threaded parent signals when the thread that started the
// child exits, maybe before the process does. The signals are caught, not
// ignored, so programs the child starts get the default dispositions.
func (c *Conn) obeyParent(sigs <-chan os.Signal) {
	for range sigs {
		for range 100 {
			if os.Getppid() != c.ppid {
				killGroup()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// killGroup kills the child's process group, this process included.
func killGroup() {
	_ = syscall.Kill(-syscall.Getpgrp(), syscall.SIGKILL)
	os.Exit(1) // not reached: the group includes this process
}

// Marked reports whether this process was started as a worker child (of
// any engine), without attaching.
func Marked() (name string, ok bool) { return os.LookupEnv(EnvMarker) }

// IsGone reports whether err from Recv or Send means the other side has
// ended the stream or exited.
func IsGone(err error) bool {
	return isEOF(err) || errors.Is(err, syscall.EPIPE)
}

// rssFromStatm reads the resident pages of /proc/PID/statm.
func rssFromStatm(data []byte) (int64, error) {
	fields := strings.Fields(string(data))
	if len(fields) < 2 {
		return 0, errors.New("child: unexpected statm")
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("child: statm: %w", err)
	}
	return pages * int64(os.Getpagesize()), nil
}
