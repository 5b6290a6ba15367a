// Package clamdtest holds the test helpers of the ClamAV example: a fake
// clamd speaking the socket protocol on a unix socket or any net.Conn, and a
// real clamd started on a signature database written by the test.
package clamdtest

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/polyswarm/psengine/examples/clamav/clamd"
)

// FakeConfig says how a Fake answers.
type FakeConfig struct {
	// Signatures maps a byte string to the detection name reported when a
	// stream contains it (the first in sorted order of names wins).
	Signatures map[string][]byte
	// Version is the VERSION reply; "" means "ClamAV 1.4.6/42/Thu Jan  1 00:00:00 2025".
	Version string
	// MaxStream is the StreamMaxLength in bytes (INSTREAM only, as for
	// clamd); 0 means no limit.
	MaxStream int
	// CloseAfter closes each connection after this many commands of a
	// session (0: never), as clamd does after a timeout or a restart.
	CloseAfter int
	// Hang makes INSTREAM read the whole stream and then never answer.
	Hang bool
	// Reply, when set, answers every INSTREAM with this raw reply (without
	// the session prefix), for malformed-reply tests.
	Reply string
	// ReloadVersion, when set, is the VERSION reply after a RELOAD, as if
	// the reload had loaded a new database.
	ReloadVersion string
}

// Fake is a fake clamd listening on a unix socket.
type Fake struct {
	Address clamd.Address
	cfg     FakeConfig
	ln      net.Listener
	wg      sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]bool

	accepted atomic.Int64
	scans    atomic.Int64
	fdScans  atomic.Int64
	reloads  atomic.Int64
	chunks   atomic.Int64
	maxChunk atomic.Int64
}

// StartFake starts a fake clamd on a unix socket in a temp dir; it is
// stopped when the test ends.
func StartFake(tb testing.TB, cfg FakeConfig) *Fake {
	tb.Helper()
	dir := ShortTempDir(tb)
	sock := filepath.Join(dir, "fake.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatalf("fake clamd: %v", err)
	}
	f := &Fake{Address: clamd.Address{Network: "unix", Addr: sock}, cfg: cfg, ln: ln, conns: map[net.Conn]bool{}}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			f.accepted.Add(1)
			f.mu.Lock()
			f.conns[nc] = true
			f.mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				f.serve(nc)
				f.mu.Lock()
				delete(f.conns, nc)
				f.mu.Unlock()
			}()
		}
	}()
	tb.Cleanup(f.Close)
	return f
}

// Close stops the fake: the listener and every connection are closed, and
// Close waits for the fake's goroutines.
func (f *Fake) Close() {
	f.ln.Close()
	f.DropAll()
	f.wg.Wait()
}

// DropAll closes every open connection, as a restarting clamd would.
func (f *Fake) DropAll() {
	f.mu.Lock()
	for nc := range f.conns {
		nc.Close()
	}
	f.mu.Unlock()
}

// Accepted is how many connections the fake accepted.
func (f *Fake) Accepted() int { return int(f.accepted.Load()) }

// Reloads is how many RELOAD commands the fake answered RELOADING.
func (f *Fake) Reloads() int { return int(f.reloads.Load()) }

// Scans is how many scans (INSTREAM and FILDES commands) the fake received.
func (f *Fake) Scans() int { return int(f.scans.Load()) }

// FDScans is how many of them were FILDES: a descriptor passed.
func (f *Fake) FDScans() int { return int(f.fdScans.Load()) }

// Chunks is how many non-empty INSTREAM chunks the fake received, and
// MaxChunk the largest.
func (f *Fake) Chunks() (n, max int) { return int(f.chunks.Load()), int(f.maxChunk.Load()) }

// Serve answers one connection with cfg until the client ends it. It is
// what StartFake runs per connection; tests use it on one end of a
// net.Pipe (inside a synctest bubble, for instance).
func Serve(nc net.Conn, cfg FakeConfig) {
	f := &Fake{cfg: cfg}
	f.serve(nc)
}

func (f *Fake) serve(nc net.Conn) {
	defer nc.Close()
	var src io.Reader = nc
	fdr := newFDReader(nc)
	if fdr != nil {
		src = fdr
		defer fdr.close()
	}
	br := bufio.NewReader(src)
	session := false
	id := 0
	reply := func(s string) error {
		if session {
			s = fmt.Sprintf("%d: %s", id, s)
		}
		_, err := nc.Write(append([]byte(s), 0))
		return err
	}
	for {
		cmd, err := br.ReadString(0)
		if err != nil {
			return
		}
		cmd = strings.TrimSuffix(cmd, "\x00")
		if !strings.HasPrefix(cmd, "z") {
			_ = reply("UNKNOWN COMMAND")
			return
		}
		switch cmd[1:] {
		case "IDSESSION":
			session = true
			continue
		case "END":
			return
		}
		id++
		switch cmd[1:] {
		case "PING":
			err = reply("PONG")
		case "VERSION":
			v := cmp.Or(f.cfg.Version, "ClamAV 1.4.6/42/Thu Jan  1 00:00:00 2025")
			if f.cfg.ReloadVersion != "" && f.reloads.Load() > 0 {
				v = f.cfg.ReloadVersion
			}
			err = reply(v)
		case "RELOAD": // as clamd: not inside a session
			if session {
				err = reply("Command invalid inside IDSESSION. ERROR")
				break
			}
			f.reloads.Add(1)
			err = reply("RELOADING")
		case "INSTREAM":
			f.scans.Add(1)
			var data []byte
			data, err = f.readStream(br)
			switch {
			case errors.Is(err, errTooLong):
				_ = reply("INSTREAM size limit exceeded. ERROR")
				return
			case err != nil:
				return
			case f.cfg.Hang:
				_, _ = io.Copy(io.Discard, br) // until the client gives up
				return
			case f.cfg.Reply != "":
				err = reply(f.cfg.Reply)
			default:
				err = reply("stream: " + f.match(data))
			}
		case "FILDES": // the descriptor comes with the byte after the command
			f.scans.Add(1)
			f.fdScans.Add(1)
			if _, err = br.ReadByte(); err != nil {
				return
			}
			file, ok := fdr.take()
			if !ok {
				_ = reply("FILDES: didn't receive file descriptor. ERROR")
				return
			}
			var data []byte
			data, err = readAll(file)
			name := fmt.Sprintf("fd[%d]", file.Fd())
			file.Close()
			switch {
			case err != nil:
				err = reply(name + ": " + err.Error() + " ERROR")
			case f.cfg.Hang:
				_, _ = io.Copy(io.Discard, br)
				return
			case f.cfg.Reply != "":
				err = reply(f.cfg.Reply)
			default:
				err = reply(name + ": " + f.match(data))
			}
		default:
			err = reply("UNKNOWN COMMAND")
		}
		if err != nil || !session || (f.cfg.CloseAfter > 0 && id >= f.cfg.CloseAfter) {
			return
		}
	}
}

var errTooLong = errors.New("stream too long")

func (f *Fake) readStream(br *bufio.Reader) ([]byte, error) {
	var data []byte
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return nil, err
		}
		n := int(binary.BigEndian.Uint32(hdr[:]))
		if n == 0 {
			return data, nil
		}
		f.chunks.Add(1)
		if int64(n) > f.maxChunk.Load() {
			f.maxChunk.Store(int64(n))
		}
		if f.cfg.MaxStream > 0 && len(data)+n > f.cfg.MaxStream {
			return nil, errTooLong
		}
		start := len(data)
		data = append(data, make([]byte, n)...)
		if _, err := io.ReadFull(br, data[start:]); err != nil {
			return nil, err
		}
	}
}

func (f *Fake) match(data []byte) string {
	for _, name := range slices.Sorted(maps.Keys(f.cfg.Signatures)) {
		if bytes.Contains(data, f.cfg.Signatures[name]) {
			return name + " FOUND"
		}
	}
	return "OK"
}

// ShortTempDir makes a temp dir whose socket paths stay under the 108 bytes
// a unix socket path may have (t.TempDir() paths can be longer), removed
// when the test ends.
func ShortTempDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "cl")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
