// Package natscli plugs natsq into the host CLI (package cli) as
// a backend, so an engine program serves and feeds a NATS JetStream queue:
//
//	ENGINE worker  --backend nats --nats-url URL [--workers N] [--nats-allow-private]
//	ENGINE analyze --backend nats --nats-url URL ARTIFACT...
//	ENGINE webhook --backend nats --nats-url URL
//
// With --nats-embedded DIR the process runs the NATS server itself, keeping
// the queue in a file store under DIR (durable intake on one machine, no
// install step); it then listens on --nats-url's address only when that
// flag is given, so other processes (workers) can join.
//
// Workers refuse http and https artifacts, and response URLs for their
// answers, on loopback, private and link-local addresses
// (natsq.Broker.WorkerOptions); --nats-allow-private, for development,
// lets a worker fetch from and answer to them. It applies to the worker
// command only: analyze and webhook submit, and the workers' own flags
// decide what they fetch.
package natscli

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"iter"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/nats-io/nats.go"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/cli"
	"github.com/polyswarm/psengine/natsq"
	"github.com/polyswarm/psengine/natsq/embedded"
)

// Backend is the "nats" backend. Its zero value is usable.
type Backend struct {
	// Config is the broker configuration the flags start from (zero:
	// natsq's defaults). The flags override Prefix, AckWait, MaxAttempts
	// and Duplicates; Logger is the program's.
	Config natsq.Config
	// NATSOptions are added to the connection's options (authentication,
	// TLS, ...), after those the flags give.
	NATSOptions []nats.Option
}

var _ cli.Backend = Backend{}

// Flags registers the --nats-* flags.
func (bk Backend) Flags(fs *flag.FlagSet) cli.Connector {
	base := bk.Config
	serverURL := fs.String("nats-url", nats.DefaultURL, "NATS server URL (comma-separated for a cluster; user:password@ in the URL, tls:// for TLS)")
	creds := fs.String("nats-creds", "", "NATS credentials file (user JWT and NKey seed)")
	embeddedDir := fs.String("nats-embedded", "", "run the NATS server in this process with its file store in `DIR`; it listens on --nats-url only when that flag is given")
	fs.StringVar(&base.Prefix, "nats-prefix", cmp.Or(base.Prefix, natsq.DefaultPrefix), "names of the queue's streams, consumer and buckets")
	fs.DurationVar(&base.AckWait, "nats-ack-wait", cmp.Or(base.AckWait, natsq.DefaultAckWait), "how long a job waits for a silent worker before another takes it")
	fs.IntVar(&base.MaxAttempts, "nats-max-attempts", cmp.Or(base.MaxAttempts, natsq.DefaultMaxAttempts), "failed attempts of a job (or worker deaths while it was scanned alone) before its last call and dead letter")
	fs.DurationVar(&base.Duplicates, "nats-duplicates", cmp.Or(base.Duplicates, natsq.DefaultDuplicates), "window in which a job ID seen before is dropped")
	wait := fs.Duration("nats-wait", 0, "analyze: how long to wait for the answers, from the first submission (0: until each bounty expires, plus a grace)")
	allowPrivate := fs.Bool("nats-allow-private", false, "worker: let bounties reference artifacts, and response URLs for their answers, on loopback, private and link-local addresses (development only)")

	return func(ctx context.Context, log *slog.Logger) (cli.Session, error) {
		urlSet := false
		fs.Visit(func(f *flag.Flag) { urlSet = urlSet || f.Name == "nats-url" })
		cfg := base
		cfg.Logger = log
		if cfg.Heartbeat >= cfg.AckWait {
			cfg.Heartbeat = 0 // derived from AckWait
		}
		if *allowPrivate && fs.Name() != "worker" {
			return nil, errors.New("nats: --nats-allow-private applies to the worker command only: workers use their own fetch policy")
		}
		if *allowPrivate {
			log.Warn("bounties may reference artifacts and response URLs on private addresses (--nats-allow-private)")
		}
		s := &session{wait: *wait, allowPrivate: *allowPrivate}
		opts := []nats.Option{
			nats.Name("psengine"),
			nats.MaxReconnects(-1),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil {
					log.Warn("NATS connection lost; reconnecting", "err", err)
				}
			}),
			nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS connection back", "server", nc.ConnectedUrlRedacted()) }),
		}
		if *creds != "" {
			opts = append(opts, nats.UserCredentials(*creds))
		}
		opts = append(opts, bk.NATSOptions...)
		var err error
		if *embeddedDir != "" {
			listen := ""
			if urlSet {
				if listen, err = hostPort(*serverURL); err != nil {
					return nil, err
				}
			}
			s.srv, err = embedded.Start(embedded.Options{StoreDir: *embeddedDir, Listen: listen})
			if err != nil {
				return nil, err
			}
			log.Info("embedded NATS server running", "store", *embeddedDir, "url", s.srv.ClientURL())
			s.nc, err = s.srv.Connect(opts...)
		} else {
			s.nc, err = nats.Connect(*serverURL, opts...)
		}
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("nats: connect %s: %w", redact(*serverURL), err)
		}
		if s.broker, err = natsq.New(s.nc, cfg); err != nil {
			s.Close()
			return nil, err
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := s.broker.Provision(pctx); err != nil {
			s.Close()
			return nil, err
		}
		return s, nil
	}
}

// hostPort is the address an embedded server listens on for --nats-url.
func hostPort(raw string) (string, error) {
	first, _, _ := strings.Cut(raw, ",")
	u, err := url.Parse(first)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("nats: --nats-url %q is not a nats://HOST:PORT URL", redact(raw))
	}
	return net.JoinHostPort(u.Hostname(), cmp.Or(u.Port(), "4222")), nil
}

// redact drops credentials from a URL list for messages.
func redact(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		if u, err := url.Parse(p); err == nil && u.User != nil {
			u.User = url.User("redacted")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

type session struct {
	broker *natsq.Broker
	nc     *nats.Conn
	srv    *embedded.Server
	wait   time.Duration
	// waitUntil is when --nats-wait, counted from the session's first
	// Analyze, ends: analyze submits its batch in several calls.
	waitOnce  sync.Once
	waitUntil time.Time
	// allowPrivate lets the worker fetch artifacts on private addresses.
	allowPrivate bool
}

func (s *session) Broker() broker.Broker { return s.broker }
func (s *session) WorkerOptions() []psengine.Option {
	if s.allowPrivate {
		return s.broker.WorkerOptions(natsq.AllowPrivate())
	}
	return s.broker.WorkerOptions()
}

func (s *session) Analyze(ctx context.Context, reqs []cli.Request) iter.Seq[psengine.Result] {
	nreqs := make([]natsq.Request, len(reqs))
	for i, r := range reqs {
		nreqs[i] = natsq.Request{Bounty: r.Bounty, Content: r.Content}
	}
	return func(yield func(psengine.Result) bool) {
		if s.wait > 0 {
			s.waitOnce.Do(func() { s.waitUntil = time.Now().Add(s.wait) })
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadlineCause(ctx, s.waitUntil, fmt.Errorf("%w: --nats-wait %v passed", natsq.ErrNoAnswer, s.wait))
			defer cancel()
		}
		for res := range s.broker.Analyze(ctx, nreqs) {
			if !yield(res) {
				return
			}
		}
	}
}

// Close stops the broker and waits (a few seconds at most) until this
// process holds no job of the queue's, so that none is left to AckWait;
// then it flushes and closes the connection and stops the embedded server.
func (s *session) Close() error {
	var errs []error
	if s.broker != nil {
		s.broker.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.broker.Drain(ctx); err != nil {
			errs = append(errs, fmt.Errorf("nats: jobs still held at exit (they return after AckWait): %w", err))
		}
		cancel()
	}
	if s.nc != nil {
		if err := s.nc.FlushTimeout(5 * time.Second); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, err)
		}
		s.nc.Close()
	}
	if s.srv != nil {
		s.srv.Shutdown()
	}
	return errors.Join(errs...)
}
