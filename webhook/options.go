package webhook

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults of the options.
const (
	// DefaultMaxBody caps a request body. A bounty is a small JSON document
	// (the artifact itself is fetched from its URI): about 1 KiB of fields,
	// a presigned artifact URI being the longest, plus whatever metadata
	// PolySwarm attaches about the artifact (hashes, file type details),
	// which has no documented size. 256 KiB is a hundred times the usual
	// bounty and leaves room for tens of KiB of metadata, while keeping the
	// memory unauthenticated requests can take at DefaultMaxReads × 256 KiB
	// = 64 MiB. A larger body is answered 413: raise it with WithMaxBody
	// (webhook --max-body) if PolySwarm sends such bounties.
	DefaultMaxBody = 256 << 10
	// DefaultRetryAfter is the Retry-After of a 503 answer.
	DefaultRetryAfter = 5 * time.Second
	// MaxDeliveryIDLen is the longest delivery id accepted (400 beyond):
	// ids are remembered, so their size is bounded too.
	MaxDeliveryIDLen = 256
	// DefaultMaxReads is how many request bodies are read at once: with
	// DefaultMaxBody, at most 64 MiB of bodies in memory whatever the
	// number of connections.
	DefaultMaxReads = 256
	// DefaultReadsPerSource is how many of them one source (an IPv4
	// address, or an IPv6 /64) may read at once: a host that holds its
	// slots with slow bodies delays its own requests only. A legitimate
	// sender's body arrives with its headers and holds a slot for
	// microseconds, so 8 is far more than a burst from PolySwarm needs.
	DefaultReadsPerSource = 8
	// DefaultReadWait is how long a request waits for its slots (its
	// source's and one of DefaultMaxReads) before it is answered 503.
	DefaultReadWait = 100 * time.Millisecond
	// DefaultReadTimeout is how long a request may take, from when the
	// handler sees it, to send its body (a bounty is about 1 KiB): a
	// slower one is answered 408 and its connection closed.
	DefaultReadTimeout = 10 * time.Second
	// DefaultMinBodyRate is the slowest a body may arrive on average, in
	// bytes per second, once DefaultBodyGrace has passed. A bounty of a few
	// KiB arrives within the grace on any link (and a body of
	// DefaultMaxBody must arrive within DefaultReadTimeout, at 26 KiB/s,
	// anyway); a client that trickles its body to hold a read slot is cut
	// off after the grace, not the read timeout, unless it sends 16 KiB a
	// second for each slot it holds.
	DefaultMinBodyRate = 16 << 10
	// DefaultBodyGrace is the time a body has before DefaultMinBodyRate
	// applies: a round trip and a retransmission or two on a slow link.
	DefaultBodyGrace = 2 * time.Second
)

// Errors of NewHandler.
var (
	// ErrNoSecret: neither a secret nor insecure mode was configured.
	ErrNoSecret = errors.New("webhook: no secret configured (give WithSecret, or WithInsecure to accept unsigned requests)")
	// ErrInvalidOption: an option has a value out of range.
	ErrInvalidOption = errors.New("webhook: invalid option")
)

// An Option configures a Handler. Options print readably (%v); a secret
// prints as "WithSecret(...)".
type Option interface {
	String() string
	apply(*config) error
}

type option struct {
	name string
	fn   func(*config) error
}

func (o option) String() string                      { return o.name }
func (o option) apply(c *config) error               { return o.fn(c) }
func opt(name string, fn func(*config) error) Option { return option{name, fn} }

// checked is the option name, which applies set when valid, else fails
// with ErrInvalidOption, naming the option and saying what it needs.
func checked(name string, valid bool, need string, set func(*config)) Option {
	return opt(name, func(c *config) error {
		if !valid {
			return fmt.Errorf("%w: %s: %s", ErrInvalidOption, name, need)
		}
		set(c)
		return nil
	})
}

type config struct {
	secret      []byte
	insecure    bool
	maxBody     int64
	retryAfter  time.Duration
	logger      *slog.Logger
	maxReads    int
	perSource   int
	readWait    time.Duration
	readTimeout time.Duration
	minRate     int64
	rateGrace   time.Duration
}

// WithSecret sets the webhook secret (as configured in PolySwarm): requests
// must carry the HMAC-SHA256 of their body under it. An empty secret counts
// as none.
func WithSecret(secret string) Option {
	return opt("WithSecret(...)", func(c *config) error {
		c.secret = nil
		if secret != "" {
			c.secret = []byte(secret)
		}
		return nil
	})
}

// WithInsecure lets a handler without a secret accept unsigned requests
// (development only: anyone who can reach it can queue bounties, which then
// fetch URLs of their choosing). NewHandler logs a warning. With a secret
// set, requests are verified regardless.
func WithInsecure() Option {
	return opt("WithInsecure()", func(c *config) error { c.insecure = true; return nil })
}

// WithMaxBody caps the request body at n bytes (default DefaultMaxBody);
// larger requests are answered 413 without being read further. n must be
// positive.
func WithMaxBody(n int64) Option {
	return checked(fmt.Sprintf("WithMaxBody(%d)", n), n > 0, "need a positive size", func(c *config) { c.maxBody = n })
}

// WithRetryAfter sets the Retry-After of 503 answers (queue full, engine
// shut down), rounded up to whole seconds (default DefaultRetryAfter).
func WithRetryAfter(d time.Duration) Option {
	return checked(fmt.Sprintf("WithRetryAfter(%v)", d), d > 0, "need a positive duration", func(c *config) { c.retryAfter = d })
}

// WithLogger sets where the handler logs (default: discard). Rejected
// requests are logged at Warn, accepted bounties at Debug.
func WithLogger(l *slog.Logger) Option {
	return opt("WithLogger(...)", func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: WithLogger(nil)", ErrInvalidOption)
		}
		c.logger = l
		return nil
	})
}

// WithReadLimit bounds the request bodies read at once to n (default
// DefaultMaxReads): a POST that finds them all taken, or all those of its
// source (WithReadLimitPerSource), waits up to wait (default
// DefaultReadWait; 0: not at all) for one, then is answered 503 with
// Retry-After and its connection closed, its body unread. With WithMaxBody
// it bounds the memory that unauthenticated requests can take (n × the body
// cap), and the goroutines they hold beyond the wait. n must be positive
// and wait not negative.
func WithReadLimit(n int, wait time.Duration) Option {
	return checked(fmt.Sprintf("WithReadLimit(%d, %v)", n, wait), n > 0 && wait >= 0, "need a positive count and a wait not negative",
		func(c *config) { c.maxReads, c.readWait = n, wait })
}

// WithReadTimeout sets how long a POST may take to send its body, counted
// from when the handler sees it (default DefaultReadTimeout); a slower one
// is answered 408 and its connection closed. It sets the connection's read
// deadline (http.ResponseController), on top of the server's own
// ReadHeaderTimeout and ReadTimeout, which the host should set too. d must
// be positive.
func WithReadTimeout(d time.Duration) Option {
	return checked(fmt.Sprintf("WithReadTimeout(%v)", d), d > 0, "need a positive duration", func(c *config) { c.readTimeout = d })
}

// WithReadLimitPerSource bounds the request bodies one source reads at once
// to n (default DefaultReadsPerSource; see WithReadLimit for what a request
// over it gets). A source is the request's IPv4 address, or the /64 prefix
// of its IPv6 address, from Request.RemoteAddr: a host that holds its slots
// with bodies it never finishes delays its own requests only, and the
// others' are read at once. n must be positive; an n of at least the read
// limit turns the bound off.
//
// Behind a reverse proxy every request comes from the proxy's address: turn
// the bound off there (n = the read limit) and have the proxy bound its
// clients (nginx, for one, reads a whole request body before it passes the
// request on). The requests sharing one source are served in no particular
// order: a host that sends both slow bodies and signed bounties gets 503s
// for some of its bounties until its slow bodies are cut off (by
// WithMinBodyRate or WithReadTimeout).
func WithReadLimitPerSource(n int) Option {
	return checked(fmt.Sprintf("WithReadLimitPerSource(%d)", n), n > 0, "need a positive count", func(c *config) { c.perSource = n })
}

// WithMinBodyRate cuts off a body that arrives slower than bytesPerSecond
// on average once grace has passed (default DefaultMinBodyRate after
// DefaultBodyGrace): a request must have sent k bytes of its body by grace
// + k/bytesPerSecond after the handler saw it, else it is answered 408 and
// its connection closed. A client can thus hold a read slot only by
// sending, which bounds what slow clients that never finish cost. It sets
// the connection's read deadline as the body arrives
// (http.ResponseController); WithReadTimeout still bounds the whole body.
// A bytesPerSecond of 0 turns the rate off; neither may be negative.
func WithMinBodyRate(bytesPerSecond int64, grace time.Duration) Option {
	return checked(fmt.Sprintf("WithMinBodyRate(%d, %v)", bytesPerSecond, grace), bytesPerSecond >= 0 && grace >= 0, "negative",
		func(c *config) { c.minRate, c.rateGrace = bytesPerSecond, grace })
}
