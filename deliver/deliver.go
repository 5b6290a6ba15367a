// Package deliver POSTs a JSON answer to a bounty's response_url reliably.
//
// A [Client] sends the document as given (Content-Type application/json) and
// retries transient failures — connection errors, per-attempt timeouts, 408,
// 429 and 5xx — with [pipeline.Retry], exponential backoff and equal jitter,
// until a 2xx answer, a permanent failure or the bounty's deadline. It never
// POSTs again once it has seen a 2xx answer. Other answers (3xx, and 4xx
// other than 408 and 429) are permanent: one attempt only, reported as an
// error wrapping [pipeline.ErrPermanent] and a [*StatusError].
//
// Retrying after a timeout means a receiver may see the same answer twice if
// it accepted the first one but its reply was lost; this is inherent to
// at-least-once delivery over HTTP and receivers should treat answers to the
// same bounty as idempotent.
//
// A Client with PublicOnly set refuses response URLs on loopback, private
// and link-local addresses (see [Client.PublicOnly]), so that a bounty from
// the network cannot make the engine POST into its own network.
//
// The package depends on the rest of psengine only for
// [fetch.PublicAddress], the one definition of a public address, and for
// pipeline's retry engine and permanent-error marker.
package deliver

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/polyswarm/psengine/fetch"
	"github.com/polyswarm/psengine/pipeline"
)

// Defaults for the zero values of [Client] fields.
const (
	DefaultAttemptTimeout = 10 * time.Second
	DefaultMinBackoff     = 250 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultUserAgent      = "psengine-deliver"
)

const (
	// errorBodyLimit is how much of a non-2xx answer's body is kept for the
	// error message.
	errorBodyLimit = 512
	// drainLimit caps how much of any answer's body is read before closing
	// it. Reading a small body to EOF lets the transport reuse the
	// connection; a larger one is abandoned (the connection is closed).
	drainLimit = 64 << 10
	// maxRedirects bounds the 307/308 redirects the default client follows.
	maxRedirects = 10
)

// A delivery that must not be retried fails with an error wrapping
// [pipeline.ErrPermanent]: the receiver rejected the answer (3xx, or 4xx
// other than 408 and 429), the URL is unusable, its address is not public
// (ErrNotPublic), the server's certificate failed verification, or the Client
// is misconfigured (ErrBadConfig).
var (
	// ErrNotPublic marks a connection a PublicOnly Client refused because
	// the address dialled is not public (see Client.PublicOnly). The error
	// names the address. It comes marked permanent: the same URL would be
	// refused again.
	ErrNotPublic = errors.New("deliver: not a public address")
	// ErrBadConfig marks a Client whose fields contradict each other
	// (PublicOnly with HTTP set). Post returns it, marked permanent, before
	// any attempt. A programming error in the host.
	ErrBadConfig = errors.New("deliver: invalid client configuration")
	// ErrExpired marks a delivery that did not succeed before the deadline
	// (less the Client's Margin), or gave up because the next wait would
	// have reached it. The error also wraps context.DeadlineExceeded and the
	// last attempt's error, if any attempt was made; its message says which.
	ErrExpired = errors.New("deliver: answer not accepted before the deadline")
)

// StatusError is a non-2xx answer from the response URL.
type StatusError struct {
	Code int
	// Body is the first bytes (at most 512) of the answer's body, for the
	// error message.
	Body string
}

func (e *StatusError) Error() string {
	msg := "deliver: HTTP " + strconv.Itoa(e.Code)
	if text := http.StatusText(e.Code); text != "" {
		msg += " " + text
	}
	if body := strings.TrimSpace(e.Body); body != "" {
		msg += ": " + strconv.Quote(body)
	}
	return msg
}

// Receipt describes what Post did, on success and failure alike.
type Receipt struct {
	// Attempts is the number of requests made, whether or not they reached
	// the receiver (0 if none was made).
	Attempts int
	// Status is the HTTP status of the last attempt, 0 if it got no answer.
	Status int
	// Duration is the time Post spent, waits included.
	Duration time.Duration
}

// Client delivers answers. Its zero value is ready to use; a Client is safe
// for concurrent use and must not be changed while Post runs.
type Client struct {
	// HTTP sends the requests. Nil means a client on a clone of
	// http.DefaultTransport keeping up to 64 idle connections per host,
	// with no overall Timeout (attempts are bounded by AttemptTimeout) that
	// follows only 307 and 308 redirects (which keep the method and body);
	// any other 3xx answer is a permanent failure; with PublicOnly, that
	// client's dialer refuses non-public addresses and it uses no proxy.
	HTTP *http.Client
	// AttemptTimeout bounds each attempt, from sending the request to
	// reading the answer. Zero means DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts: before
	// retry n the wait is drawn uniformly from [b/2, b] with
	// b = min(MaxBackoff, MinBackoff·2^(n-1)) ("equal jitter"), so waits
	// grow even with bad luck. Zero means DefaultMinBackoff and
	// DefaultMaxBackoff; a MaxBackoff below MinBackoff is raised to it.
	MinBackoff, MaxBackoff time.Duration
	// Margin makes Post stop this long before the deadline passed to it,
	// leaving the receiver time to process the answer. Zero means none.
	Margin time.Duration
	// Logger receives a record per failed attempt and one for the outcome.
	// Nil discards.
	Logger *slog.Logger
	// UserAgent is sent with each request. Empty means DefaultUserAgent.
	UserAgent string
	// PublicOnly refuses to connect to addresses that are not public (see
	// fetch.PublicAddress: loopback, private, shared, link-local such as
	// cloud metadata services, unspecified, multicast), so that a bounty's
	// response URL cannot make the engine POST into its own network. The
	// address actually dialled is judged, so neither a DNS answer nor a 307
	// or 308 redirect gets around it. A refusal is permanent: Post returns
	// an error wrapping pipeline.ErrPermanent and ErrNotPublic, naming the
	// address, after that one attempt, and nothing reaches the address.
	//
	// It applies to the default client (HTTP nil), which then uses no proxy:
	// a proxy would connect on our behalf, unchecked. With a client of your
	// own, set fetch.PublicOnlyControl on its dialer instead (its refusals,
	// wrapping fetch.ErrNotAllowed, are permanent too): Post refuses
	// PublicOnly together with HTTP with ErrBadConfig, as fetch refuses
	// Policy.PublicOnly with a Client.
	PublicOnly bool
}

// defaultHTTP keeps more idle connections per host than
// http.DefaultTransport's 2: many workers answer to the same PolySwarm host,
// and each would otherwise open a new connection per answer.
var defaultHTTP = &http.Client{
	Transport:     defaultTransport(),
	CheckRedirect: followBodyKeepingRedirects,
}

func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return t
}

// defaultPublicHTTP is defaultHTTP refusing addresses that are not public.
var defaultPublicHTTP = publicOnlyHTTP(isPublic)

// isPublic is fetch.PublicAddress for a dialled address.
func isPublic(ap netip.AddrPort) bool { return fetch.PublicAddress(ap.Addr()) }

// publicOnlyHTTP is defaultHTTP whose dialer connects only to the addresses
// allowed admits, without a proxy.
func publicOnlyHTTP(allowed func(netip.AddrPort) bool) *http.Client {
	t := defaultTransport()
	t.Proxy = nil // a proxy would dial on our behalf, unchecked
	t.DialContext = (&net.Dialer{
		Timeout:   30 * time.Second, // http.DefaultTransport's
		KeepAlive: 30 * time.Second,
		Control:   refuseUnless(allowed),
	}).DialContext
	return &http.Client{Transport: t, CheckRedirect: followBodyKeepingRedirects}
}

// refuseUnless returns a net.Dialer Control function refusing, with
// ErrNotPublic, the addresses allowed does not admit.
func refuseUnless(allowed func(netip.AddrPort) bool) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: cannot judge %s address %q: %w", ErrNotPublic, network, address, err)
		}
		if !allowed(ap) {
			return fmt.Errorf("%w: %s", ErrNotPublic, ap.Addr())
		}
		return nil
	}
}

// followBodyKeepingRedirects follows 307 and 308, which repeat the POST with
// its body, and stops at any other 3xx, which net/http would turn into a GET
// that loses the answer.
func followBodyKeepingRedirects(req *http.Request, via []*http.Request) error {
	if req.Response != nil {
		switch req.Response.StatusCode {
		case http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		default:
			return http.ErrUseLastResponse
		}
	}
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	return nil
}

// Post sends body (a JSON document, posted as given) to rawURL with
// Content-Type application/json until a 2xx answer, a permanent failure, or
// the deadline less c.Margin; a zero deadline means until ctx ends (or until
// the next wait would reach ctx's deadline: see pipeline.Retry). It blocks;
// canceling ctx stops it at once, with an error wrapping ctx's cause. It never
// POSTs again after any 2xx answer, and the Receipt is filled in on every
// return. The retries are [pipeline.Retry]'s.
//
// It returns nil on a 2xx answer. Permanent failures wrap
// [pipeline.ErrPermanent] (which psengine.ErrPermanent is): a *StatusError
// for a 3xx or for a 4xx other than 408 and 429, after that single attempt;
// ErrNotPublic for an address PublicOnly refuses, after that attempt;
// ErrBadConfig, before any attempt, for PublicOnly with HTTP set; the cause
// for a URL that is not absolute http(s) or a certificate that fails
// verification. It returns an error wrapping ErrExpired,
// context.DeadlineExceeded and the last attempt's error when the deadline
// passes first, or would pass during the next wait: when the receiver's
// Retry-After points at or past the deadline, Post gives up at once rather
// than wait, and says so in the message.
//
// Retry-After (delay-seconds or an HTTP date) on a retryable answer sets the
// least wait before the next attempt. When the next backoff wait would
// reach the deadline (or ctx's deadline), Post instead makes one final
// attempt, started so that it has min(AttemptTimeout, half the remaining
// time) left.
//
// Work that outlives an HTTP request should pass its own context, such as
// context.WithoutCancel(requestContext), and rely on the deadline.
func (c *Client) Post(ctx context.Context, rawURL string, body []byte, deadline time.Time) (Receipt, error) {
	start := time.Now()
	var rec Receipt
	err := c.post(ctx, rawURL, body, deadline, &rec)
	rec.Duration = time.Since(start)
	return rec, err
}

func (c *Client) post(ctx context.Context, rawURL string, body []byte, deadline time.Time, rec *Receipt) error {
	if c.PublicOnly && c.HTTP != nil {
		return pipeline.Permanent(fmt.Errorf("%w: PublicOnly applies to the default client; set fetch.PublicOnlyControl on the HTTP client's dialer instead", ErrBadConfig))
	}
	tmpl, err := c.newRequest(rawURL, body)
	if err != nil {
		return pipeline.Permanent(err)
	}
	log := discard
	if c.Logger != nil {
		log = c.Logger.With("url", redact(tmpl.URL))
	}

	rctx, expires := ctx, false
	var effective time.Time
	if !deadline.IsZero() {
		effective = deadline.Add(-c.Margin)
		var cancel context.CancelFunc
		rctx, cancel = context.WithDeadline(ctx, effective)
		defer cancel()
		dl, _ := rctx.Deadline()
		expires = dl.Equal(effective) // not an earlier deadline of ctx's
	}
	// Retry's context is ctx ending at effective. An attempt's derives from
	// ctx itself and ends at effective or earlier, so it ends with Retry's
	// without registering as its child (an allocation per Post).
	attempt := func(context.Context, struct{}) (struct{}, error) {
		rec.Attempts++
		var err error
		rec.Status, err = c.attempt(ctx, tmpl, effective)
		if err != nil && !errors.Is(err, pipeline.ErrPermanent) {
			log.WarnContext(ctx, "deliver: attempt failed", "attempt", rec.Attempts, "status", rec.Status, "err", err)
		}
		return struct{}{}, err
	}
	_, err = pipeline.Retry(c.backoff(), attempt)(rctx, struct{}{})
	switch {
	case err == nil:
		log.DebugContext(ctx, "deliver: answer accepted", "attempts", rec.Attempts, "status", rec.Status)
	case errors.Is(err, pipeline.ErrPermanent):
		log.WarnContext(ctx, "deliver: answer rejected", "attempts", rec.Attempts, "status", rec.Status, "err", err)
	case ctx.Err() == nil && expires && errors.Is(err, context.DeadlineExceeded):
		log.WarnContext(ctx, "deliver: gave up at deadline", "attempts", rec.Attempts, "status", rec.Status, "err", err)
		return fmt.Errorf("%w: %w", ErrExpired, err)
	default:
		return fmt.Errorf("deliver: %w", err)
	}
	return err
}

// attempt sends one POST, allowed until the attempt timeout or notAfter (if
// not zero), whichever comes first, and returns the answer's status with nil for a 2xx, or an error
// [pipeline.Retry] understands: marked [pipeline.Permanent], or carrying the
// answer's Retry-After as a [pipeline.RetryAfter] hint. It reads a capped part
// of the answer's body and closes it before returning.
func (c *Client) attempt(ctx context.Context, tmpl *http.Request, notAfter time.Time) (int, error) {
	end := time.Now().Add(c.attemptTimeout())
	if !notAfter.IsZero() && notAfter.Before(end) {
		end = notAfter
	}
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()

	// A shallow copy shares the template's URL and headers, which neither
	// http.Client nor a RoundTripper may modify; the body is fresh.
	req := tmpl.WithContext(ctx)
	req.Body, _ = tmpl.GetBody()

	resp, err := c.httpClient().Do(req)
	if err != nil {
		redactURLError(err)
		if isPermanentTransportError(err) {
			return 0, pipeline.Permanent(err)
		}
		return 0, err
	}
	defer resp.Body.Close()

	code := resp.StatusCode
	if code >= 200 && code < 300 {
		// The answer is accepted whatever happens to the rest of the body.
		_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
		return code, nil
	}

	head, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
	_, _ = io.CopyN(io.Discard, resp.Body, drainLimit-errorBodyLimit)
	err = &StatusError{Code: code, Body: string(head)}
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500 && code <= 599:
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return code, pipeline.RetryAfter(d, err)
		}
		return code, err
	}
	return code, pipeline.Permanent(err)
}

// parseRetryAfter reads a Retry-After value: delay-seconds (1*DIGIT) or an
// HTTP date, relative to now. A date in the past means no wait. Huge values
// saturate. ok is false for an empty or malformed value.
func parseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if isDigits(v) {
		const maxSeconds = uint64(1<<63-1) / uint64(time.Second)
		secs, err := strconv.ParseUint(v, 10, 64)
		if err != nil || secs > maxSeconds { // only ErrRange is possible here
			return time.Duration(1<<63 - 1), true
		}
		return time.Duration(secs) * time.Second, true
	}
	when, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(when.Sub(now), 0), true
}

func isDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// backoff is the Client's schedule: equal jitter, [b/2, b] before retry n
// with b = min(MaxBackoff, MinBackoff·2^(n-1)), and a final attempt fitted
// before the deadline.
func (c *Client) backoff() pipeline.Backoff {
	b := pipeline.Backoff{Initial: c.MinBackoff, Max: c.MaxBackoff, Multiplier: 2, Jitter: 0.5, JitterDown: true, FinalAttempt: c.attemptTimeout()}
	if b.Initial <= 0 {
		b.Initial = DefaultMinBackoff
	}
	if b.Max <= 0 {
		b.Max = DefaultMaxBackoff
	}
	b.Max = max(b.Max, b.Initial)
	return b
}

func (c *Client) attemptTimeout() time.Duration {
	if c.AttemptTimeout > 0 {
		return c.AttemptTimeout
	}
	return DefaultAttemptTimeout
}

func (c *Client) httpClient() *http.Client {
	switch {
	case c.HTTP != nil:
		return c.HTTP
	case c.PublicOnly:
		return defaultPublicHTTP
	}
	return defaultHTTP
}

var discard = slog.New(slog.DiscardHandler)

// newRequest builds the request every attempt copies. It accepts only
// absolute http and https URLs with a host. The request's GetBody (also
// used by http.Client for 307/308 redirects) yields a fresh reader over body.
func (c *Client) newRequest(rawURL string, body []byte) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, rawURL, nil)
	if err != nil {
		return nil, err
	}
	u := req.URL
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("response URL %q: scheme must be http or https", redact(u))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("response URL %q: no host", redact(u))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", cmp.Or(c.UserAgent, DefaultUserAgent))
	req.ContentLength = int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	if len(body) == 0 {
		req.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
	}
	return req, nil
}

// redact drops the userinfo, query and fragment, which may carry tokens.
func redact(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// redactURLError drops the userinfo, query and fragment from the URL that
// a *url.Error from http.Client names, so that errors and logs do not
// carry the response URL's tokens.
func redactURLError(err error) {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			ue.URL = redact(u)
		} else {
			ue.URL = "(unparsable URL)"
		}
	}
}

// isPermanentTransportError reports failures that a retry cannot fix: the
// address is not public (refused by PublicOnly, or by fetch.PublicOnlyControl
// on the host's own client), or the server's certificate did not verify.
func isPermanentTransportError(err error) bool {
	if errors.Is(err, ErrNotPublic) || errors.Is(err, fetch.ErrNotAllowed) {
		return true
	}
	var (
		verify    *tls.CertificateVerificationError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &authority) ||
		errors.As(err, &hostname) || errors.As(err, &invalid)
}
