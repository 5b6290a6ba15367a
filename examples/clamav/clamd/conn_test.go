package clamd_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/polyswarm/psengine/examples/clamav/clamd"
	"github.com/polyswarm/psengine/examples/clamav/internal/clamdtest"
	"github.com/polyswarm/psengine/psenginetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var fakeSigs = map[string][]byte{"Fake.Eicar": psenginetest.EICAR(), "Fake.Marker": []byte("MARKER-1234")}

func dial(t *testing.T, addr clamd.Address) *clamd.Conn {
	t.Helper()
	c, err := clamd.Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func TestSessionServesManyCommands(t *testing.T) {
	fake := clamdtest.StartFake(t, clamdtest.FakeConfig{Signatures: fakeSigs})
	c := dial(t, fake.Address)
	ctx := context.Background()

	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	v, err := c.Version(ctx)
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	if want := (clamd.Version{Raw: "ClamAV 1.4.6/42/Thu Jan  1 00:00:00 2025", Engine: "1.4.6", Signatures: "42", Date: "Thu Jan  1 00:00:00 2025"}); v != want {
		t.Errorf("Version = %+v, want %+v", v, want)
	}
	embedded := append(append(randomBytes(3*clamd.ChunkSize), []byte("MARKER-1234")...), randomBytes(1000)...)
	for _, tc := range []struct {
		name string
		data []byte
		want clamd.Reply
	}{
		{"eicar", psenginetest.EICAR(), clamd.Reply{Name: "stream", Status: clamd.StatusFound, Signature: "Fake.Eicar"}},
		{"clean", []byte("hello"), clamd.Reply{Name: "stream", Status: clamd.StatusOK}},
		{"empty", nil, clamd.Reply{Name: "stream", Status: clamd.StatusOK}},
		{"marker in the 4th chunk", embedded, clamd.Reply{Name: "stream", Status: clamd.StatusFound, Signature: "Fake.Marker"}},
		{"exactly one chunk", randomBytes(clamd.ChunkSize), clamd.Reply{Name: "stream", Status: clamd.StatusOK}},
	} {
		got, err := c.InStream(ctx, bytes.NewReader(tc.data))
		if err != nil {
			t.Fatalf("%s: InStream: %v", tc.name, err)
		}
		if got != tc.want {
			t.Errorf("%s: InStream = %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if err := c.Err(); err != nil {
		t.Errorf("connection unusable after clean scans: %v", err)
	}
	if n := fake.Accepted(); n != 1 {
		t.Errorf("%d connections for one session, want 1", n)
	}
	chunks, maxChunk := fake.Chunks()
	// eicar 1, hello 1, embedded 4, one chunk 1.
	if chunks != 7 || maxChunk != clamd.ChunkSize {
		t.Errorf("chunks = %d (largest %d), want 7 (largest %d)", chunks, maxChunk, clamd.ChunkSize)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.Ping(ctx); !errors.Is(err, clamd.ErrConnection) {
		t.Errorf("Ping after Close: %v, want ErrConnection", err)
	}
}

// A stream over the size limit: clamd answers and closes while the client
// is still writing; the reply must not be lost to the broken pipe.
func TestInStreamSizeLimit(t *testing.T) {
	fake := clamdtest.StartFake(t, clamdtest.FakeConfig{MaxStream: 10 << 10})
	for _, size := range []int{20 << 10, 200 << 10, 16 << 20} { // one chunk, several, and more than socket buffers hold
		c := dial(t, fake.Address)
		_, err := c.InStream(context.Background(), bytes.NewReader(make([]byte, size)))
		if !errors.Is(err, clamd.ErrSizeLimit) {
			t.Fatalf("%d bytes over a 10 KiB limit: %v, want ErrSizeLimit", size, err)
		}
		var re *clamd.ReplyError
		if !errors.As(err, &re) || re.Command != "INSTREAM" {
			t.Errorf("error %v is not a *ReplyError for INSTREAM", err)
		}
		if c.Err() == nil {
			t.Error("connection still usable after the size-limit reply (clamd closes it)")
		}
	}
}

func TestDroppedConnection(t *testing.T) {
	fake := clamdtest.StartFake(t, clamdtest.FakeConfig{CloseAfter: 2})
	c := dial(t, fake.Address)
	ctx := context.Background()
	for i := range 2 {
		if _, err := c.InStream(ctx, strings.NewReader("x")); err != nil {
			t.Fatalf("scan %d: %v", i, err)
		}
	}
	_, err := c.InStream(ctx, strings.NewReader("x"))
	if !errors.Is(err, clamd.ErrConnection) {
		t.Fatalf("scan on a dropped connection: %v, want ErrConnection", err)
	}
	if !errors.Is(c.Err(), clamd.ErrConnection) {
		t.Errorf("Err() = %v, want ErrConnection", c.Err())
	}
	if err := c.Ping(ctx); !errors.Is(err, clamd.ErrConnection) {
		t.Errorf("Ping on a failed connection: %v", err)
	}
}

type failingReader struct{ n int }

var errDisk = errors.New("disk on fire")

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errDisk
	}
	n := min(len(p), r.n)
	r.n -= n
	return n, nil
}

func TestInStreamInputError(t *testing.T) {
	fake := clamdtest.StartFake(t, clamdtest.FakeConfig{})
	c := dial(t, fake.Address)
	_, err := c.InStream(context.Background(), &failingReader{n: 3 * clamd.ChunkSize / 2})
	if !errors.Is(err, errDisk) {
		t.Fatalf("InStream = %v, want the reader's error", err)
	}
	if errors.Is(err, clamd.ErrConnection) {
		t.Errorf("an input error reported as a lost connection: %v", err)
	}
	if c.Err() == nil {
		t.Error("connection usable after a stream cut short")
	}
}

func TestMalformedReplies(t *testing.T) {
	for _, reply := range []string{"garbage", "stream: FOUND", "stream:"} {
		fake := clamdtest.StartFake(t, clamdtest.FakeConfig{Reply: reply})
		c := dial(t, fake.Address)
		if _, err := c.InStream(context.Background(), strings.NewReader("x")); !errors.Is(err, clamd.ErrProtocol) {
			t.Errorf("reply %q: %v, want ErrProtocol", reply, err)
		}
		if c.Err() == nil {
			t.Errorf("reply %q: connection still usable", reply)
		}
	}
}

// serveScript answers a session on nc with the given raw replies, one per
// command.
func serveScript(nc net.Conn, replies ...string) {
	defer nc.Close()
	br := bufio.NewReader(nc)
	if _, err := br.ReadString(0); err != nil { // zIDSESSION
		return
	}
	for _, r := range replies {
		if _, err := br.ReadString(0); err != nil {
			return
		}
		if _, err := nc.Write(append([]byte(r), 0)); err != nil {
			return
		}
	}
	_, _ = io.Copy(io.Discard, br)
}

func TestReplyToAnotherRequest(t *testing.T) {
	client, server := net.Pipe()
	go serveScript(server, "7: PONG")
	c, err := clamd.NewConn(client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(context.Background()); !errors.Is(err, clamd.ErrProtocol) || !strings.Contains(err.Error(), "request 7") {
		t.Errorf("Ping = %v, want ErrProtocol naming request 7", err)
	}
}

func TestPingNotPong(t *testing.T) {
	client, server := net.Pipe()
	go serveScript(server, "1: ClamAV 1.4.6", "2: PING")
	c, err := clamd.NewConn(client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Version(context.Background()); err != nil {
		t.Fatalf("Version: %v", err)
	}
	if err := c.Ping(context.Background()); !errors.Is(err, clamd.ErrProtocol) {
		t.Errorf("Ping answered PING: %v, want ErrProtocol", err)
	}
}

func TestLongReply(t *testing.T) {
	client, server := net.Pipe()
	go serveScript(server, "1: "+strings.Repeat("x", 100<<10))
	c, err := clamd.NewConn(client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(context.Background()); !errors.Is(err, clamd.ErrProtocol) {
		t.Errorf("100 KiB reply: %v, want ErrProtocol", err)
	}
}

func TestDialUnreachable(t *testing.T) {
	dir := t.TempDir()
	_, err := clamd.Dial(context.Background(), clamd.Address{Network: "unix", Addr: filepath.Join(dir, "none.sock")})
	if !errors.Is(err, clamd.ErrUnreachable) {
		t.Errorf("Dial to a missing socket: %v, want ErrUnreachable", err)
	}
	if _, err := clamd.Dial(context.Background(), clamd.Address{}); !errors.Is(err, clamd.ErrAddress) {
		t.Errorf("Dial to the zero Address: %v, want ErrAddress", err)
	}
}

// A clamd that never answers: the context's deadline ends the scan, and
// the connection is not used again.
func TestInStreamDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		go clamdtest.Serve(server, clamdtest.FakeConfig{Hang: true})
		c, err := clamd.NewConn(client)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		_, err = c.InStream(ctx, bytes.NewReader(randomBytes(200<<10)))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("InStream = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d != 30*time.Second {
			t.Errorf("returned after %v, want at the 30s deadline", d)
		}
		if c.Err() == nil {
			t.Error("connection usable after an abandoned command")
		}
	})
}

func TestCancelledBeforeStart(t *testing.T) {
	fake := clamdtest.StartFake(t, clamdtest.FakeConfig{})
	c := dial(t, fake.Address)
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("bounty withdrawn")
	cancel(cause)
	if _, err := c.InStream(ctx, strings.NewReader("x")); !errors.Is(err, cause) {
		t.Errorf("InStream with an ended context = %v, want its cause", err)
	}
	if err := c.Err(); err != nil {
		t.Errorf("connection spoiled by a command never sent: %v", err)
	}
	if err := c.Ping(context.Background()); err != nil {
		t.Errorf("Ping after: %v", err)
	}
}

func TestPingDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		go func() { // reads commands, never answers
			defer server.Close()
			_, _ = io.Copy(io.Discard, server)
		}()
		c, err := clamd.NewConn(client)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Ping(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Ping = %v, want DeadlineExceeded", err)
		}
	})
}
