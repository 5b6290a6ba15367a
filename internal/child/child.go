// Package child runs and supervises worker child processes: the engine's
// own binary, re-executed, serving scans over a pair of pipes. It is the
// mechanism behind psengine's process backend (psengine.WithProcessWorkers);
// scanners never see it.
//
// The parent starts a child with Start: the child inherits the parent's
// environment (or Config.Environ: a sandbox's allow-list) plus the marker
// variable (EnvMarker) naming the engine it is
// to serve, runs in a process group of its own (so that one kill reaches
// everything it started), and on Linux is killed when the parent dies
// (parent-death signal), whatever way the parent goes. The child finds its
// pipes with Attach. Messages are gob-encoded values, one stream each way:
// Send and Recv on both sides.
//
// Everything the child writes to its stdout or stderr reaches the parent
// line by line (Config.Output), so that stray prints never corrupt the
// message stream, which uses descriptors 3 and 4.
package child

import (
	"bufio"
	"bytes"
	"encoding/gob"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// Credential is the user a child runs as (Config.Credential).
type Credential struct{ UID, GID uint32 }

// Config says how to start a child.
type Config struct {
	// Name is the marker's value: the engine the child is to serve.
	Name string
	// Path is the program to run; "" means this process's executable.
	Path string
	// Args are its arguments (without the program name); nil means this
	// process's own (os.Args[1:]), so that the child starts the way the
	// parent did until it recognises the marker.
	Args []string
	// Env is added to the parent's environment (KEY=VALUE), or to Environ.
	Env []string
	// Environ, when not nil, replaces the parent's environment (a sandbox
	// passes only an allow-list).
	Environ []string
	// Credential, when not nil, runs the child as that user (the parent
	// must be allowed to switch: root).
	Credential *Credential
	// Cleanup, when not nil, is called once the child has exited and was
	// reaped, before Exited is closed (not when Start fails).
	Cleanup func()
	// Output receives each line the child writes to its stdout or stderr,
	// without the line end, with the child's pid; nil discards them. It is
	// called from one goroutine per child.
	Output func(pid int, line string)
}

// EnvMarker is the environment variable that tells a process it was started
// as a worker child; its value names the engine it serves.
const EnvMarker = "PSENGINE_CHILD"

// ErrUnsupported is returned by Start where child processes are not
// supported (outside unix).
var ErrUnsupported = errors.New("child: worker child processes are not supported on this platform")

// conn is one end of the message stream: a gob encoder and decoder over a
// pair of pipes.
type conn struct {
	in   *os.File
	out  *os.File
	dec  *gob.Decoder
	mu   sync.Mutex // serialises Send
	w    *bufio.Writer
	enc  *gob.Encoder
	once sync.Once
}

// newConn makes a conn reading in and writing out; either may be nil for a
// stream one way.
func newConn(in, out *os.File) *conn {
	c := &conn{in: in, out: out}
	if in != nil {
		c.dec = gob.NewDecoder(bufio.NewReaderSize(in, 64<<10))
	}
	if out != nil {
		c.w = bufio.NewWriterSize(out, 64<<10)
		c.enc = gob.NewEncoder(c.w)
	}
	return c
}

// send encodes v and flushes it to the other side. It is safe for
// concurrent use.
func (c *conn) send(v any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.enc.Encode(v); err != nil {
		return err
	}
	return c.w.Flush()
}

// recv decodes the next value into v. Only one goroutine may call it at a
// time. It returns io.EOF (or io.ErrUnexpectedEOF) when the other side is
// gone.
func (c *conn) recv(v any) error { return c.dec.Decode(v) }

// closeOut ends the stream this side sends: the other side's recv then
// returns io.EOF.
func (c *conn) closeOut() error {
	var err error
	c.once.Do(func() {
		if c.out != nil {
			err = c.out.Close()
		}
	})
	return err
}

// controlFrame is what the control stream carries: a value the parent
// sent with SendControl (its own gob), or the parent's word that it
// retires the child, sent before it closes the child's input.
type controlFrame struct {
	Payload []byte
	Retire  bool
}

// Conn is the child's end of the streams (see Attach).
type Conn struct {
	c, control *conn
	ppid       int         // the parent's pid
	closing    atomic.Bool // Close was called: the streams end here, not at the parent
	ctl        chan []byte // control values, read by watchControl
	retired    chan struct{}
}

// watchControl reads the control stream for the child's whole life. The
// parent keeps it open as long as it lives, so its end means the parent
// is gone (killed, crashed, exited without retiring the child): the
// child's whole process group is then killed, this process and what its
// scanner started included.
func (c *Conn) watchControl() {
	defer close(c.ctl)
	for {
		var f controlFrame
		if err := c.control.recv(&f); err != nil {
			if !c.closing.Load() {
				killGroup()
			}
			return
		}
		if f.Retire {
			close(c.retired)
			continue
		}
		c.ctl <- f.Payload
	}
}

// RecvControl receives the parent's next control value (Process.SendControl)
// into v. Only one goroutine at a time may call it. When the parent is
// gone the child's process group is killed (see watchControl); after
// Close, it returns an error.
func (c *Conn) RecvControl(v any) error {
	data, ok := <-c.ctl
	if !ok {
		return io.EOF
	}
	return gob.NewDecoder(bytes.NewReader(data)).Decode(v)
}

// Send sends v to the parent. It is safe for concurrent use.
func (c *Conn) Send(v any) error { return c.c.send(v) }

// Recv receives the parent's next value into v; io.EOF means the parent
// retired the child. The input also ends when the parent dies: then the
// child's process group is killed instead (see watchControl), whichever
// end the child sees first.
func (c *Conn) Recv(v any) error {
	err := c.c.recv(v)
	if err != nil && isEOF(err) && !c.closing.Load() {
		<-c.retired // or the process ends first: the parent is gone
	}
	return err
}

// Close ends the child's side of the streams.
func (c *Conn) Close() error {
	c.closing.Store(true)
	err := c.c.closeOut()
	if cerr := c.c.in.Close(); err == nil {
		err = cerr
	}
	_ = c.control.in.Close()
	return err
}

// isEOF reports whether err means the stream ended.
func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, os.ErrClosed)
}
