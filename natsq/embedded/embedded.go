// Package embedded runs a NATS server with JetStream inside the process, so
// one machine gets a durable queue with no install step (and tests get a
// real server). Jobs are kept in a file store under a directory of the
// host's choosing and survive a restart of the process.
package embedded

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ErrStart: the server could not start (bad options, port in use, store
// directory unusable).
var ErrStart = errors.New("embedded: nats-server did not start")

// Options configure a Server.
type Options struct {
	// StoreDir is the JetStream file store directory (created if missing).
	// Required: the point of the embedded mode is durability. One server
	// at a time may use a directory.
	StoreDir string
	// Listen is the host:port other processes connect to (port 0: a free
	// one); "" means none: only this process connects, through Connect.
	Listen string
	// ReadyTimeout bounds the start (default 10s).
	ReadyTimeout time.Duration
	// Logf, when set, receives the server's notices and errors.
	Logf func(format string, args ...any)
}

// Server is a NATS server running in this process.
type Server struct {
	srv *server.Server
}

// Start starts a server and waits until it accepts connections. The caller
// calls Shutdown.
func Start(o Options) (*Server, error) {
	if o.StoreDir == "" {
		return nil, fmt.Errorf("%w: no StoreDir", ErrStart)
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	opts := &server.Options{
		ServerName: "psengine-embedded",
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		NoLog:      o.Logf == nil,
	}
	if o.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("%w: Listen %q: %w", ErrStart, o.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("%w: Listen %q: bad port", ErrStart, o.Listen)
		}
		if p == 0 {
			p = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, p
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	if o.Logf != nil {
		srv.SetLoggerV2(logger(o.Logf), false, false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(o.ReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("%w: not ready within %v (is the port in use, or StoreDir locked by another server?)", ErrStart, o.ReadyTimeout)
	}
	return &Server{srv: srv}, nil
}

// Connect opens an in-process connection (no network) with opts.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s.srv)}, opts...)
	return nats.Connect("", opts...)
}

// ClientURL is the URL other processes connect to ("" without Listen).
func (s *Server) ClientURL() string {
	if s.srv.Addr() == nil {
		return ""
	}
	return s.srv.ClientURL()
}

// Shutdown stops the server and waits until it has stopped. JetStream data
// is flushed to StoreDir.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

type logger func(format string, args ...any)

func (l logger) Noticef(format string, v ...any) { l("[notice] "+format, v...) }
func (l logger) Warnf(format string, v ...any)   { l("[warn] "+format, v...) }
func (l logger) Fatalf(format string, v ...any)  { l("[fatal] "+format, v...) }
func (l logger) Errorf(format string, v ...any)  { l("[error] "+format, v...) }
func (l logger) Debugf(format string, v ...any)  {}
func (l logger) Tracef(format string, v ...any)  {}
