package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/fetch"
)

// Backend is a distributed queue the host can use instead of the
// in-process one: `worker --backend NAME` serves it, `analyze --backend
// NAME` submits to it and waits for the answers, `webhook --backend NAME`
// submits to it. Backends live outside this module (the natsq module
// provides "nats"), so the library and this package depend on none of
// them; a program registers them in Program.Backends.
type Backend interface {
	// Flags registers the backend's own flags on fs, the flag set of one
	// subcommand, and returns the function that connects with their
	// values once fs is parsed. Flag names start with the backend's name
	// (--nats-url) so several backends can share one flag set.
	Flags(fs *flag.FlagSet) Connector
}

// Connector connects to a backend for one subcommand. It honours ctx while
// connecting; the caller closes the Session it returns.
type Connector func(ctx context.Context, log *slog.Logger) (Session, error)

// Session is one subcommand's use of a backend. Close releases what the
// session opened (connections, an embedded server); it is called once, after
// every other use.
type Session interface {
	// Broker is the queue: a worker's engine serves it, intake submits to it.
	Broker() broker.Broker
	// WorkerOptions are the engine options a worker needs besides
	// WithBroker(Broker()): reading artifacts staged by submitters and
	// returning answers to them.
	WorkerOptions() []psengine.Option
	// Analyze submits one bounty per request (staging the content of local
	// ones where workers can read it) and yields one Result per request, in
	// request order, each as soon as it and those before it are answered.
	// Requests not answered when ctx ends, or when the backend's own
	// timeout passes, are yielded with Answered false and Err set: a
	// request the queue refuses for want of room wraps
	// psengine.ErrQueueFull, one that expired before a worker reached it
	// psengine.ErrExpired (analyze submits both again). Stopping early
	// abandons the wait.
	//
	// `analyze --backend` calls it several times on one session, and
	// concurrently: it submits its artifacts in windows (--in-flight), each
	// bounty forged with its own expiration when it is submitted.
	Analyze(ctx context.Context, reqs []Request) iter.Seq[psengine.Result]
	Close() error
}

// Request is one artifact of `analyze --backend`.
type Request struct {
	Bounty psengine.Bounty
	// Content is the artifact's bytes when they come from this machine (a
	// path, file: URI or stdin): the backend must make them readable by a
	// worker elsewhere. Nil when the bounty's URI travels as it is (http,
	// https, data:, or a URL artifact). The caller closes it after Analyze.
	Content *fetch.Content
}

// backendFlags registers every backend's flags on fs and returns their
// connectors by name (runFlags.check refuses a --backend naming none).
func (p *Program) backendFlags(fs *flag.FlagSet) map[string]Connector {
	conns := make(map[string]Connector, len(p.Backends))
	for _, name := range slices.Sorted(maps.Keys(p.Backends)) {
		conns[name] = p.Backends[name].Flags(fs)
	}
	return conns
}

// backendNames lists the registered backends for usage messages.
func (p *Program) backendNames() string {
	names := slices.Sorted(maps.Keys(p.Backends))
	if len(names) == 0 {
		return "none (this program registers no backend)"
	}
	return strings.Join(names, ", ")
}

// backendUsage describes each registered backend's flags.
func (p *Program) backendUsage(w io.Writer) {
	for _, name := range slices.Sorted(maps.Keys(p.Backends)) {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		p.Backends[name].Flags(fs)
		fmt.Fprintf(w, "\nFlags of --backend %s (worker, analyze, webhook):\n", name)
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

// isLocalURI tells whether uri names something only this machine can read:
// stdin, a path or a file: URI.
func isLocalURI(uri string) bool {
	if uri == "-" {
		return true
	}
	u, err := url.Parse(uri)
	if err != nil {
		return true // not a URI: a path
	}
	switch strings.ToLower(u.Scheme) {
	case "", "file":
		return true
	}
	return len(u.Scheme) == 1 // a Windows drive letter (C:\...)
}
