// Package clamd is a small client of the ClamAV daemon's socket protocol,
// enough for a scanning engine: PING, VERSION, INSTREAM and FILDES inside
// one IDSESSION, so that one connection serves many scans, and RELOAD.
//
// # Protocol
//
// Commands are sent NUL-terminated with the "z" prefix and replies come back
// NUL-terminated. A connection made by Dial starts a session (zIDSESSION):
// clamd then keeps it open between commands and tags each reply with the
// number of its request ("3: stream: OK"); without a session clamd would
// close the connection after one command. INSTREAM sends the data as chunks,
// each a 4-byte big-endian length and the bytes, ending with a zero-length
// chunk; the artifact is read through a fixed buffer of ChunkSize bytes, so
// it is never held in memory whole. FILDES (ScanFD, unix sockets only)
// passes clamd an open file's descriptor instead, with SCM_RIGHTS, and
// clamd reads the file itself.
//
// clamd closes a connection on its own: after "INSTREAM size limit
// exceeded" (a stream longer than its StreamMaxLength), after one of its
// timeouts (ReadTimeout, CommandReadTimeout), when it stops. The reply is
// read even when the writes fail, so the size-limit answer is never lost to
// a broken pipe. A Conn whose connection failed reports it (Err) and must
// be replaced: dial again.
//
// # Errors
//
// Dial failures wrap ErrUnreachable, failures of an established connection
// ErrConnection, malformed replies ErrProtocol, and ERROR replies are
// *ReplyError (ErrReply; the size-limit reply also matches ErrSizeLimit).
// Parsers of the daemon's bytes (ParseReply, SplitID, ParseVersion) are
// exported and fuzzed.
package clamd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// ChunkSize is how many bytes of the artifact go in each INSTREAM chunk
// (and how much of it is in memory at once).
const ChunkSize = 64 << 10

// DialTimeout bounds a dial whose context has no earlier deadline.
const DialTimeout = 10 * time.Second

// replyGrace is how long a reply is awaited after a write failed: clamd
// writes its reply (such as the size-limit one) before it closes.
const replyGrace = 5 * time.Second

// Address is where clamd listens: a unix socket or a TCP address.
type Address struct {
	Network string // "unix" or "tcp"
	Addr    string // socket path, or host:port
}

// ParseAddress parses "unix:/path/to/clamd.sock" or "tcp:host:port".
// Anything else gives an error wrapping ErrAddress.
func ParseAddress(s string) (Address, error) {
	network, addr, ok := strings.Cut(s, ":")
	bad := func(why string) (Address, error) {
		return Address{}, fmt.Errorf("%w: %q: %s (want unix:/path/clamd.sock or tcp:host:port)", ErrAddress, s, why)
	}
	if !ok {
		return bad("no network prefix")
	}
	switch network {
	case "unix":
		if addr == "" {
			return bad("empty socket path")
		}
		if strings.ContainsRune(addr, 0) {
			return bad("NUL in socket path")
		}
	case "tcp":
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return bad(err.Error())
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return bad(fmt.Sprintf("port %q is not a number from 1 to 65535", port))
		}
		if host == "" {
			return bad("empty host")
		}
	default:
		return bad(fmt.Sprintf("unknown network %q", network))
	}
	return Address{Network: network, Addr: addr}, nil
}

// String returns the address in the form ParseAddress reads.
func (a Address) String() string { return a.Network + ":" + a.Addr }

// Conn is one connection to clamd holding an IDSESSION. It is not safe for
// concurrent use: one goroutine at a time (a worker) sends commands on it.
// Each method honours its context: when the context ends, the command is
// abandoned, the connection becomes unusable and the error wraps the
// context's cause.
type Conn struct {
	nc     net.Conn
	br     *bufio.Reader
	next   int    // number of the next request in the session
	err    error  // sticky: why the connection is unusable
	wbuf   []byte // the INSTREAM write buffer, made on first use
	closed bool
}

// Dial connects to clamd at addr and starts a session. Failures wrap
// ErrUnreachable. ctx bounds the dial only (DialTimeout at most).
func Dial(ctx context.Context, addr Address) (*Conn, error) {
	if addr.Network == "" {
		return nil, fmt.Errorf("%w: empty address", ErrAddress)
	}
	d := net.Dialer{Timeout: DialTimeout}
	nc, err := d.DialContext(ctx, addr.Network, addr.Addr)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, addr, err)
	}
	c, err := NewConn(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, addr, err)
	}
	return c, nil
}

// NewConn starts a session on an established connection to clamd (a custom
// transport, or a test's fake) and takes ownership of nc.
func NewConn(nc net.Conn) (*Conn, error) {
	c := &Conn{nc: nc, br: bufio.NewReaderSize(nc, 4096), next: 1}
	if _, err := nc.Write([]byte("zIDSESSION\x00")); err != nil {
		return nil, fmt.Errorf("starting the session: %w", err)
	}
	return c, nil
}

// Err returns nil while the connection is usable, else why it is not
// (wrapping ErrConnection, ErrProtocol or the cause of a cancellation).
func (c *Conn) Err() error {
	if c.closed && c.err == nil {
		return fmt.Errorf("%w: closed", ErrConnection)
	}
	return c.err
}

// Close ends the session (best effort) and closes the connection.
// Closing twice returns nil.
func (c *Conn) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	if c.err == nil {
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.nc.Write([]byte("zEND\x00"))
	}
	return c.nc.Close()
}

// Ping sends PING and expects PONG.
func (c *Conn) Ping(ctx context.Context) error {
	reply, err := c.roundTrip(ctx, "PING")
	if err != nil {
		return err
	}
	if reply != "PONG" {
		c.fail(fmt.Errorf("%w: PING answered %s", ErrProtocol, quote(reply)))
		return c.err
	}
	return nil
}

// Version sends VERSION and parses the answer.
func (c *Conn) Version(ctx context.Context) (Version, error) {
	reply, err := c.roundTrip(ctx, "VERSION")
	if err != nil {
		return Version{}, err
	}
	v, err := ParseVersion(reply)
	if err != nil {
		c.fail(err)
		return Version{}, err
	}
	return v, nil
}

// InStream sends what r yields to clamd in ChunkSize chunks and returns
// clamd's verdict. An ERROR reply is returned with a *ReplyError (the
// size-limit one matches ErrSizeLimit); the connection is then unusable,
// as clamd closes it. A failure to read r is returned as is (wrapped) and
// also leaves the connection unusable, since the stream was cut short.
func (c *Conn) InStream(ctx context.Context, r io.Reader) (Reply, error) {
	if err := c.usable(ctx); err != nil {
		return Reply{}, err
	}
	id := c.next
	c.next++
	stop := c.watch(ctx)

	type readResult struct {
		reply string
		err   error
	}
	// A stream longer than one chunk is written while a goroutine waits for
	// the reply, which clamd may send before the end (the size limit); a
	// stream of one chunk is written at once and its reply read after.
	var replyc chan readResult
	startReader := func() {
		replyc = make(chan readResult, 1)
		go func() {
			s, err := c.readReply()
			replyc <- readResult{s, err}
		}()
	}

	const cmd = "zINSTREAM\x00"
	if c.wbuf == nil {
		c.wbuf = make([]byte, len(cmd)+4+ChunkSize+4)
	}
	buf := c.wbuf
	off := copy(buf, cmd)
	var srcErr, writeErr error
	var early *readResult
	for {
		n, err := io.ReadFull(r, buf[off+4:off+4+ChunkSize])
		if n > 0 {
			binary.BigEndian.PutUint32(buf[off:], uint32(n))
			off += 4 + n
		}
		end := err == io.EOF || err == io.ErrUnexpectedEOF
		if err != nil && !end {
			srcErr = err
			break
		}
		if end {
			off += copy(buf[off:], []byte{0, 0, 0, 0})
		}
		if _, err := c.nc.Write(buf[:off]); err != nil {
			writeErr = err
			break
		}
		off = 0
		if end {
			break
		}
		if replyc == nil {
			startReader()
		}
		select { // clamd may answer before the end (the size limit)
		case res := <-replyc:
			early = &res
		default:
		}
		if early != nil {
			break
		}
	}

	switch {
	case srcErr != nil:
		_ = c.nc.SetDeadline(time.Unix(1, 0)) // stop any reader: the stream is cut short
	case writeErr != nil:
		_ = c.nc.SetReadDeadline(time.Now().Add(replyGrace))
		if ctx.Err() != nil { // the watch may have set its deadline first
			_ = c.nc.SetDeadline(time.Unix(1, 0))
		}
	}
	var res readResult
	switch {
	case early != nil:
		res = *early
	case replyc != nil:
		res = <-replyc
	case srcErr == nil:
		res.reply, res.err = c.readReply()
	}
	cancelled := !stop()

	switch {
	case srcErr != nil:
		c.fail(fmt.Errorf("%w: stream cut short", ErrConnection))
		return Reply{}, fmt.Errorf("clamd INSTREAM: reading the input: %w", srcErr)
	case res.err != nil:
		return Reply{}, c.ioError(ctx, cancelled, "INSTREAM", errors.Join(writeErr, res.err))
	}
	if early != nil || writeErr != nil {
		c.fail(fmt.Errorf("%w: clamd answered before the end of the stream", ErrConnection))
	}
	return c.scanReply(ctx, "INSTREAM", id, res.reply, cancelled)
}

// scanReply checks and parses the reply to a scan command (INSTREAM,
// FILDES) of the session's request id. A reply that says the connection
// is in trouble, or that arrived as ctx ended (cancelled: the deadline
// was set as it did), fails the connection.
func (c *Conn) scanReply(ctx context.Context, cmd string, id int, reply string, cancelled bool) (Reply, error) {
	reply, err := c.checkID(id, reply)
	if err != nil {
		return Reply{}, err
	}
	rep, err := ParseReply(reply)
	if err != nil {
		c.fail(err)
		return Reply{}, err
	}
	if err := rep.Err(cmd); err != nil {
		c.fail(fmt.Errorf("%w: after %w", ErrConnection, err))
		return rep, err
	}
	if cancelled {
		c.fail(fmt.Errorf("%w: %w", ErrConnection, context.Cause(ctx)))
	}
	return rep, nil
}

// roundTrip sends a command and returns its reply, without the session's
// request number.
func (c *Conn) roundTrip(ctx context.Context, cmd string) (string, error) {
	if err := c.usable(ctx); err != nil {
		return "", err
	}
	id := c.next
	c.next++
	stop := c.watch(ctx)
	_, err := c.nc.Write([]byte("z" + cmd + "\x00"))
	var reply string
	if err == nil {
		reply, err = c.readReply()
	}
	cancelled := !stop()
	if err != nil {
		return "", c.ioError(ctx, cancelled, cmd, err)
	}
	if cancelled {
		c.fail(fmt.Errorf("%w: %w", ErrConnection, context.Cause(ctx)))
	}
	return c.checkID(id, reply)
}

// usable refuses a command on an unusable connection or an ended context.
func (c *Conn) usable(ctx context.Context) error {
	if err := c.Err(); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// watch makes ctx's end interrupt the connection's reads and writes; stop
// returns false when it did.
func (c *Conn) watch(ctx context.Context) (stop func() bool) {
	if ctx.Done() == nil {
		return func() bool { return true }
	}
	return context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
}

// ioError marks the connection failed and says why: the context's end, or
// a lost connection.
func (c *Conn) ioError(ctx context.Context, cancelled bool, cmd string, err error) error {
	if cancelled {
		c.fail(fmt.Errorf("%w: %s: %w", ErrConnection, cmd, context.Cause(ctx)))
		return fmt.Errorf("clamd %s: %w", cmd, context.Cause(ctx))
	}
	c.fail(fmt.Errorf("%w: %s: %w", ErrConnection, cmd, err))
	return c.err
}

func (c *Conn) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// checkID strips the session's request number, which must be id.
func (c *Conn) checkID(id int, s string) (string, error) {
	got, reply, err := SplitID(s)
	if err != nil {
		c.fail(err)
		return "", err
	}
	if got != id {
		c.fail(fmt.Errorf("%w: reply to request %d while waiting for %d: %s", ErrProtocol, got, id, quote(s)))
		return "", c.err
	}
	return reply, nil
}

// readReply reads one NUL-terminated reply (without the NUL).
func (c *Conn) readReply() (string, error) {
	var acc []byte
	for {
		part, err := c.br.ReadSlice(0)
		switch {
		case err == nil:
			part = part[:len(part)-1]
			if acc == nil {
				return string(part), nil
			}
			return string(append(acc, part...)), nil
		case errors.Is(err, bufio.ErrBufferFull):
			acc = append(acc, part...)
			if len(acc) > maxReply {
				return "", fmt.Errorf("%w: reply longer than %d bytes", ErrProtocol, maxReply)
			}
		case errors.Is(err, io.EOF):
			if len(acc)+len(part) > 0 {
				return "", fmt.Errorf("reply cut short after %d bytes: %w", len(acc)+len(part), io.ErrUnexpectedEOF)
			}
			return "", fmt.Errorf("clamd closed the connection: %w", err)
		default:
			return "", err
		}
	}
}
