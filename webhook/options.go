package webhook

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults of the options.
const (
	// DefaultMaxBody caps a request body: bounties are small JSON documents
	// (the artifact itself is fetched from its URI).
	DefaultMaxBody = 1 << 20
	// DefaultRetryAfter is the Retry-After of a 503 answer.
	DefaultRetryAfter = 5 * time.Second
	// MaxDeliveryIDLen is the longest delivery id accepted (400 beyond):
	// ids are remembered, so their size is bounded too.
	MaxDeliveryIDLen = 256
	// DefaultMaxReads is how many request bodies are read at once: with
	// DefaultMaxBody, at most 64 MiB of bodies in memory whatever the
	// number of connections.
	DefaultMaxReads = 64
	// DefaultReadWait is how long a request waits for one of the
	// DefaultMaxReads before it is answered 503.
	DefaultReadWait = 100 * time.Millisecond
	// DefaultReadTimeout is how long a request may take, from when the
	// handler sees it, to send its body (a bounty is about 1 KiB): a
	// slower one is answered 408 and its connection closed.
	DefaultReadTimeout = 10 * time.Second
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

type config struct {
	secret      []byte
	insecure    bool
	maxBody     int64
	retryAfter  time.Duration
	logger      *slog.Logger
	maxReads    int
	readWait    time.Duration
	readTimeout time.Duration
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
	return opt(fmt.Sprintf("WithMaxBody(%d)", n), func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("%w: WithMaxBody(%d): need a positive size", ErrInvalidOption, n)
		}
		c.maxBody = n
		return nil
	})
}

// WithRetryAfter sets the Retry-After of 503 answers (queue full, engine
// shut down), rounded up to whole seconds (default DefaultRetryAfter).
func WithRetryAfter(d time.Duration) Option {
	return opt(fmt.Sprintf("WithRetryAfter(%v)", d), func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithRetryAfter(%v): need a positive duration", ErrInvalidOption, d)
		}
		c.retryAfter = d
		return nil
	})
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
// DefaultMaxReads): a POST that finds them all taken waits up to wait
// (default DefaultReadWait; 0: not at all) for one, then is answered 503
// with Retry-After and its connection closed, its body unread. With
// WithMaxBody it bounds the memory that unauthenticated requests can take
// (n × the body cap), and the goroutines they hold beyond the wait. n must
// be positive and wait not negative.
func WithReadLimit(n int, wait time.Duration) Option {
	return opt(fmt.Sprintf("WithReadLimit(%d, %v)", n, wait), func(c *config) error {
		if n <= 0 || wait < 0 {
			return fmt.Errorf("%w: WithReadLimit(%d, %v): need a positive count and a wait not negative", ErrInvalidOption, n, wait)
		}
		c.maxReads, c.readWait = n, wait
		return nil
	})
}

// WithReadTimeout sets how long a POST may take to send its body, counted
// from when the handler sees it (default DefaultReadTimeout); a slower one
// is answered 408 and its connection closed. It sets the connection's read
// deadline (http.ResponseController), on top of the server's own
// ReadHeaderTimeout and ReadTimeout, which the host should set too. d must
// be positive.
func WithReadTimeout(d time.Duration) Option {
	return opt(fmt.Sprintf("WithReadTimeout(%v)", d), func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithReadTimeout(%v): need a positive duration", ErrInvalidOption, d)
		}
		c.readTimeout = d
		return nil
	})
}
