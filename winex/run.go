package winex

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

var (
	// ErrStart reports a program that could not be started (not found, not
	// executable, bad directory, context already done); the cause is wrapped.
	ErrStart = errors.New("winex: cannot start program")
	// ErrKilled reports a program killed because its context ended; the
	// context's cause (context.Cause) is wrapped, so errors.Is(err,
	// context.DeadlineExceeded) works.
	ErrKilled = errors.New("winex: program killed")
	// ErrSignaled reports a program that died from a signal it was not sent by
	// Run (a crash, or someone else's kill).
	ErrSignaled = errors.New("winex: program died from a signal")
)

// DefaultMaxOutput is the cap on each captured stream when Cmd.MaxOutput is 0.
const DefaultMaxOutput = 16 << 20

// Cmd describes one run of a program, native or under Wine: the same deadline,
// kill, capture and decoding apply to both.
type Cmd struct {
	// Path is the program. Natively it is looked up in PATH when it has no
	// slash (as exec.Command). Under Wine it is what `wine PATH` accepts: a
	// Windows name ("find", `C:\av\scan.exe`) or a Unix path to an .exe.
	Path string
	Args []string
	// Dir is the working directory (a Unix path); "" means the current one.
	Dir string
	// Env holds extra KEY=value variables, added after the current process's
	// environment and, under Wine, after Wine's own (the last value wins).
	Env []string
	// Wine runs the program under Wine when non-nil; nil runs it natively
	// (on Windows, Discover returns nil so the same code runs directly).
	Wine *Wine
	// Stdin is the program's standard input; nil means the null device. An
	// *os.File is passed as is; any other reader is copied by a goroutine that
	// ends at its next write once the program is gone (a reader that blocks
	// forever keeps that goroutine, as in os/exec).
	Stdin io.Reader
	// Encoding decodes stdout and stderr (each detected on its own with Auto,
	// the zero value).
	Encoding Encoding
	// MaxOutput caps what is kept of each of stdout and stderr; the rest is
	// read and dropped, and Result.Truncated is set. 0 means DefaultMaxOutput.
	MaxOutput int64
	// AlwaysPrints says the program writes to stdout whenever it runs (a
	// header, a report): under Wine, a non-zero exit with nothing on stdout
	// is then Wine failing to start it, not the program's answer (see Run).
	AlwaysPrints bool
}

// Result is what a run produced. Stdout and Stderr are decoded to UTF-8 with
// "\n" line endings; the raw bytes are kept too.
type Result struct {
	ExitCode             int // -1 when killed or died from a signal
	Stdout, Stderr       string
	RawStdout, RawStderr []byte
	Duration             time.Duration // from start to the program's exit
	Truncated            bool          // some output went over MaxOutput
	PID                  int           // also the process group of the run
}

// Command returns a Cmd running path with args under w, or natively when w is
// nil (direct mode, see Discover).
func (w *Wine) Command(path string, args ...string) Cmd {
	return Cmd{Path: path, Args: args, Wine: w}
}

// Run starts c, waits for it and returns what it printed and its exit code. A
// non-zero exit code is not an error.
//
// The program runs in a process group of its own. When it exits, whatever it
// left running in that group is killed (a program that detaches with setsid,
// such as wineserver and Wine's service processes, is outside and left
// alone). When ctx ends first, the whole group gets SIGKILL, the program is
// reaped and Run returns the partial Result with an error wrapping ErrKilled
// and context.Cause(ctx). Run never waits for other processes that inherited
// the output pipes: once the program has exited and its group is killed, the
// output already written is drained and the pipes are closed.
//
// Under Wine the prefix must be initialised (see Wine.InitPrefix): otherwise
// the error wraps ErrPrefix. Start failures wrap ErrStart. Run is safe for
// concurrent use, also on one prefix.
//
// Wine 8 now and then aborts at exit, after the program ran, with a
// dynamic-loader assertion ("Inconsistency detected by ld.so: dl-fini.c",
// exit status 127) when many Wine processes end at once; and, now and then,
// it fails to start one of several programs started at once, which exits
// non-zero having printed nothing. Run runs such a program once more when
// it has no Stdin to replay: after the loader's abort always, after a
// silent failure when the Cmd says the program AlwaysPrints (a program
// may legitimately fail in silence, and would then run twice).
func Run(ctx context.Context, c Cmd) (Result, error) {
	res, err := run(ctx, c)
	if c.Wine == nil || c.Stdin != nil || err != nil || res.ExitCode == 0 || ctx.Err() != nil {
		return res, err
	}
	loaderAbort := res.ExitCode == 127 && strings.Contains(res.Stderr, "Inconsistency detected by ld.so")
	silent := c.AlwaysPrints && res.Stdout == ""
	if loaderAbort || silent {
		return run(ctx, c)
	}
	return res, err
}

func run(ctx context.Context, c Cmd) (Result, error) {
	if c.Path == "" {
		return Result{ExitCode: -1}, fmt.Errorf("%w: empty path", ErrStart)
	}
	s := spec{
		argv:  append([]string{c.Path}, c.Args...),
		env:   os.Environ(),
		dir:   c.Dir,
		stdin: c.Stdin,
		enc:   c.Encoding,
		max:   c.MaxOutput,
	}
	if c.Wine != nil {
		if err := c.Wine.checkPrefix(true); err != nil {
			return Result{ExitCode: -1}, err
		}
		if c.Wine.Loader == "" {
			return Result{ExitCode: -1}, fmt.Errorf("%w: no wine loader", ErrNoWine)
		}
		s.argv = append([]string{c.Wine.Loader}, s.argv...)
		s.env = append(s.env, c.Wine.Environ()...)
	}
	s.env = append(s.env, c.Env...)
	return execute(ctx, s)
}

// spec is one process to run; Run and the Wine helpers build it.
type spec struct {
	argv  []string
	env   []string // complete; nil inherits
	dir   string
	stdin io.Reader
	enc   Encoding
	max   int64
	// keepGroup leaves what the program started in its group running after
	// a normal exit (wineboot and the server warm-up start Wine's session).
	keepGroup bool
	// fileOutput captures into unlinked temp files rather than pipes, for
	// commands whose daemons keep their stdio (wineserver -p).
	fileOutput bool
}

func execute(ctx context.Context, s spec) (res Result, err error) {
	res.ExitCode = -1
	if ctx.Err() != nil {
		return res, fmt.Errorf("%w: %s: %w", ErrStart, s.argv[0], context.Cause(ctx))
	}
	limit := s.max
	if limit <= 0 {
		limit = DefaultMaxOutput
	}
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Env = s.env
	cmd.Dir = s.dir
	ownGroup(cmd)

	var closers []io.Closer // our ends to close whatever happens
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	stdout, err := newCapture(limit, s.fileOutput)
	if err != nil {
		return res, fmt.Errorf("%w: %s: output: %w", ErrStart, s.argv[0], err)
	}
	closers = append(closers, stdout)
	stderr, err := newCapture(limit, s.fileOutput)
	if err != nil {
		return res, fmt.Errorf("%w: %s: output: %w", ErrStart, s.argv[0], err)
	}
	closers = append(closers, stderr)
	cmd.Stdout, cmd.Stderr = stdout.w, stderr.w

	var stdinW *os.File
	switch in := s.stdin.(type) {
	case nil:
	case *os.File:
		cmd.Stdin = in
	default:
		r, w, err := os.Pipe()
		if err != nil {
			return res, fmt.Errorf("%w: %s: stdin: %w", ErrStart, s.argv[0], err)
		}
		closers = append(closers, r, w)
		cmd.Stdin, stdinW = r, w
	}

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("%w: %s: %w", ErrStart, s.argv[0], err)
	}
	res.PID = cmd.Process.Pid
	stdout.started()
	stderr.started()
	if stdinW != nil {
		cmd.Stdin.(*os.File).Close() // the child has its copy
		go func() {
			io.Copy(stdinW, s.stdin) //nolint:errcheck // the program may stop reading
			stdinW.Close()
		}()
	}

	p := &proc{cmd: cmd}
	exited := make(chan struct{})
	go func() {
		p.waitExit()
		close(exited)
	}()
	killed := false
	select {
	case <-exited:
	case <-ctx.Done():
		select {
		case <-exited: // it finished just in time: not a kill
		default:
			killed = true
			p.killGroup()
			<-exited
		}
	}
	res.Duration = time.Since(start)
	if killed || !s.keepGroup {
		p.killGroup() // leftovers; the group still exists: its leader is not reaped yet
	}
	state, waitErr := p.reap()
	if stdinW != nil {
		stdinW.Close() // ends the copier at its next write
	}
	res.RawStdout, res.Truncated = stdout.finish()
	var t bool
	res.RawStderr, t = stderr.finish()
	res.Truncated = res.Truncated || t
	res.Stdout = Decode(res.RawStdout, s.enc)
	res.Stderr = Decode(res.RawStderr, s.enc)

	if killed {
		return res, fmt.Errorf("%w: %s (pid %d) after %v: %w", ErrKilled, s.argv[0], res.PID,
			res.Duration.Round(time.Millisecond), context.Cause(ctx))
	}
	if state == nil {
		return res, fmt.Errorf("%w: %s: wait: %w", ErrStart, s.argv[0], waitErr)
	}
	res.ExitCode = state.ExitCode()
	if res.ExitCode < 0 {
		return res, fmt.Errorf("%w: %s (pid %d): %s", ErrSignaled, s.argv[0], res.PID, state)
	}
	return res, nil
}
