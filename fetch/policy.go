package fetch

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultMaxSize is the size cap when Policy.MaxSize is 0: 2 GiB.
const DefaultMaxSize int64 = 2 << 30

// DefaultMemoryLimit is the in-memory threshold when Policy.MemoryLimit is 0: 1 MiB.
const DefaultMemoryLimit int64 = 1 << 20

// DefaultTempPrefix starts temp file names when neither Policy.TempPrefix nor
// $TMPPREFIX is set.
const DefaultTempPrefix = "psengine-"

// Opener is the source of a custom URI scheme, registered in Policy.Openers
// (an object store on another machine, a content-addressed cache...). It
// returns a reader of the whole content; Fetch reads it to the end (or to
// the size cap) and closes it. The reader must stop, or fail, when ctx is
// done: Fetch checks ctx only between reads. An error the Opener returns is
// classified ErrUnreachable unless it already matches one of this package's
// sentinels.
type Opener func(ctx context.Context, u *url.URL) (io.ReadCloser, error)

// Policy says which URIs Fetch may read and how it holds what it reads. The
// zero Policy allows no scheme (only registered Openers); start from Local
// or Remote. A Policy is a value: copy and adjust it; Fetch may be called
// concurrently (do not modify Openers meanwhile).
type Policy struct {
	// Allow lists the built-in schemes Fetch accepts: "file" (file: URIs and
	// plain paths), "stdin" ("-"), "data", "http", "https". Compared
	// case-insensitively.
	Allow []string
	// MaxSize caps the content size in bytes; larger content fails with a
	// *TooLargeError as soon as it is announced or, failing that, as soon as
	// one byte past the cap is read (nothing past it is ever buffered).
	// 0 means DefaultMaxSize; negative is invalid.
	MaxSize int64
	// MemoryLimit: content up to this size stays in memory; larger content
	// is spilled to a temp file as it is read. Local files are never copied
	// to disk (one of at most this size is read into memory as it is
	// hashed, and Content.Path still returns the file itself).
	// 0 means DefaultMemoryLimit; negative is invalid.
	MemoryLimit int64
	// TempDir is where temp files go; "" means os.TempDir() (which honours
	// $TMPDIR), evaluated at each Fetch.
	TempDir string
	// TempPrefix starts temp file names, which go on with the process ID,
	// "-" and a random part (see RemoveStale); "" means $TMPPREFIX if set,
	// else DefaultTempPrefix. Only its last path element is used (so a
	// zsh-style TMPPREFIX=/tmp/zsh gives "zsh").
	TempPrefix string
	// Client performs http and https fetches; nil means a shared client with
	// connection, TLS-handshake and response-header timeouts but no overall
	// timeout (ctx bounds the whole fetch). Redirects to a scheme the Policy
	// does not allow are refused with ErrNotAllowed.
	Client *http.Client
	// Stdin is read for "-"; nil means os.Stdin. It is not closed. A Read
	// blocked on a terminal or pipe cannot be interrupted: cancellation is
	// noticed when it returns.
	Stdin io.Reader
	// Openers are the sources of custom schemes, keyed by lowercase scheme
	// name. Registering an Opener allows its scheme (it need not be in
	// Allow): registration is the host's explicit choice. The built-in names
	// (file, stdin, data, http, https) cannot be registered.
	Openers map[string]Opener
	// PublicOnly refuses http and https connections to addresses that are
	// not public (see PublicAddress: loopback, private, link-local such as
	// cloud metadata services, ...), with ErrNotAllowed, so that a bounty
	// cannot make the engine reach into its own network. It applies to the
	// default client (which then uses no proxy); with a Client of your own,
	// set PublicOnlyControl on its dialer instead (Fetch refuses the
	// combination with ErrBadPolicy).
	PublicOnly bool
}

var builtinSchemes = []string{"file", "stdin", "data", "http", "https"}

// Local is the policy for the host's own inputs (the command line, tests):
// file (and plain paths), stdin, data, http and https.
func Local() Policy {
	return Policy{Allow: []string{"file", "stdin", "data", "http", "https"}}
}

// Remote is the policy for artifact URIs received from the network (bounties):
// data, http and https only. Local files and stdin are refused.
func Remote() Policy {
	return Policy{Allow: []string{"data", "http", "https"}}
}

// Open fetches uri with the Local policy and no checksum:
// Local().Fetch(ctx, uri, "").
func Open(ctx context.Context, uri string) (*Content, error) {
	return Local().Fetch(ctx, uri, "")
}

// Fetch reads uri once, streaming: hashing, capping, keeping the head and,
// over MemoryLimit, spilling to a temp file, all in one pass. A local regular
// file is not copied to disk: it is hashed in one pass (which keeps it in
// memory when it is at most MemoryLimit) and Content.Path returns it.
//
// uri is one of:
//   - "-": the Policy's Stdin ("stdin" scheme);
//   - a URI with a scheme of two or more characters: data: (RFC 2397, see
//     DataURI), file: (file:///abs/path or file://localhost/abs/path),
//     http:, https:, or a scheme registered in Openers;
//   - anything else is a local path, relative to the working directory
//     ("file" scheme). Write a path containing a colon before any slash as
//     "./name:x" or as a file: URI.
//
// wantSHA256 "" skips the check; otherwise it is compared case-insensitively
// and a mismatch returns a *ChecksumError (ErrChecksum).
//
// Fetch blocks until the content is read, and honours ctx: cancellation is
// noticed between reads and interrupts HTTP reads; it returns an error
// matching ctx.Err(). On any error nothing is left behind: temp files are
// removed and bodies closed. Errors match ErrNotAllowed, ErrMalformedURI,
// ErrUnreachable (and *StatusError), ErrTooLarge (*TooLargeError),
// ErrChecksum (*ChecksumError), ErrChanged (a local file modified while it
// was hashed) or ErrBadPolicy; their messages are one line.
//
// The caller owns the Content and must Close it.
func (p Policy) Fetch(ctx context.Context, uri string, wantSHA256 string) (*Content, error) {
	l, err := p.limits()
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, cancelledError(ctx, "cancelled before reading")
	}
	c, err := p.fetch(ctx, l, uri)
	if err != nil {
		return nil, err
	}
	return checkSum(c, wantSHA256)
}

// FromReader reads r to its end like Fetch reads a stream (hashing, capping
// at MaxSize, spilling over MemoryLimit, checking wantSHA256 unless ""). It
// ignores Allow and does not close r.
func (p Policy) FromReader(ctx context.Context, r io.Reader, wantSHA256 string) (*Content, error) {
	l, err := p.limits()
	if err != nil {
		return nil, err
	}
	c, err := l.spool(ctx, r, -1, "reader")
	if err != nil {
		return nil, err
	}
	return checkSum(c, wantSHA256)
}

func checkSum(c *Content, want string) (*Content, error) {
	if want != "" && !strings.EqualFold(want, c.sum) {
		c.Close()
		return nil, &ChecksumError{Want: want, Got: c.sum}
	}
	return c, nil
}

func (p Policy) fetch(ctx context.Context, l limits, uri string) (*Content, error) {
	if uri == "" {
		return nil, fmt.Errorf("%w: empty URI", ErrMalformedURI)
	}
	if uri == "-" {
		if err := p.check("stdin"); err != nil {
			return nil, err
		}
		var in io.Reader = os.Stdin
		if p.Stdin != nil {
			in = p.Stdin
		}
		return l.spool(ctx, in, -1, "stdin")
	}
	scheme, ok := uriScheme(uri)
	if !ok {
		if err := p.check("file"); err != nil {
			return nil, err
		}
		return l.fetchFile(ctx, uri)
	}
	if open, ok := p.Openers[scheme]; ok {
		return l.fetchCustom(ctx, open, uri)
	}
	if !slices.Contains(builtinSchemes, scheme) || scheme == "stdin" {
		return nil, fmt.Errorf("%w: %q (no source for this scheme; a host can register one in Policy.Openers)", ErrNotAllowed, scheme)
	}
	if err := p.check(scheme); err != nil {
		return nil, err
	}
	if scheme == "data" {
		return l.fetchData(ctx, uri)
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedURI, unwrapURLError(err))
	}
	if scheme == "file" {
		path, err := filePath(u)
		if err != nil {
			return nil, err
		}
		return l.fetchFile(ctx, path)
	}
	if u.Host == "" { // http, https
		return nil, fmt.Errorf("%w: %s URI has no host", ErrMalformedURI, scheme)
	}
	return p.fetchHTTP(ctx, l, u)
}

// check returns an ErrNotAllowed error unless the policy allows scheme.
func (p Policy) check(scheme string) error {
	if p.allows(scheme) {
		return nil
	}
	what := fmt.Sprintf("%q", scheme)
	switch scheme {
	case "stdin":
		what += ` ("-")`
	case "file":
		what += " (local files)"
	}
	allowed := "nothing"
	if len(p.Allow) > 0 || len(p.Openers) > 0 {
		names := slices.Collect(maps.Keys(p.Openers))
		for _, s := range p.Allow {
			names = append(names, strings.ToLower(s))
		}
		slices.Sort(names)
		allowed = strings.Join(names, ", ")
	}
	return fmt.Errorf("%w: %s; this policy allows %s", ErrNotAllowed, what, allowed)
}

func (p Policy) allows(scheme string) bool {
	if _, ok := p.Openers[scheme]; ok {
		return true
	}
	for _, s := range p.Allow {
		if strings.EqualFold(s, scheme) {
			return true
		}
	}
	return false
}

// limits validates the policy and applies defaults.
func (p Policy) limits() (limits, error) {
	if p.MaxSize < 0 {
		return limits{}, fmt.Errorf("%w: MaxSize %d is negative", ErrBadPolicy, p.MaxSize)
	}
	if p.MemoryLimit < 0 {
		return limits{}, fmt.Errorf("%w: MemoryLimit %d is negative", ErrBadPolicy, p.MemoryLimit)
	}
	for name, open := range p.Openers {
		switch {
		case slices.Contains(builtinSchemes, name):
			return limits{}, fmt.Errorf("%w: Openers[%q]: built-in schemes cannot be replaced", ErrBadPolicy, name)
		case !isScheme(name) || strings.ToLower(name) != name:
			return limits{}, fmt.Errorf("%w: Openers[%q]: not a lowercase URI scheme", ErrBadPolicy, name)
		case open == nil:
			return limits{}, fmt.Errorf("%w: Openers[%q] is nil", ErrBadPolicy, name)
		}
	}
	l := limits{max: cmp.Or(p.MaxSize, DefaultMaxSize), memCap: cmp.Or(p.MemoryLimit, DefaultMemoryLimit),
		dir: p.TempDir, prefix: p.TempPrefix}
	l.memCap = min(l.memCap, l.max)
	// An empty dir or prefix is resolved (TMPDIR, TMPPREFIX) when a temp
	// file is made: most content never needs one.
	l.prefix = lastElem(l.prefix)
	return l, nil
}

func defaultTempPrefix() string {
	if p := lastElem(os.Getenv("TMPPREFIX")); p != "" {
		return p
	}
	return DefaultTempPrefix
}

// lastElem returns what follows the last path separator of s.
func lastElem(s string) string {
	if i := strings.LastIndexByte(s, filepath.Separator); i >= 0 {
		return s[i+1:]
	}
	return s
}

// uriScheme returns the lowercase scheme of uri when uri starts with one
// (RFC 3986 syntax) of at least two characters, so that "C:\x" and plain
// paths are not mistaken for URIs.
func uriScheme(uri string) (string, bool) {
	i := strings.IndexByte(uri, ':')
	if i < 2 || !isScheme(uri[:i]) {
		return "", false
	}
	return strings.ToLower(uri[:i]), true
}

func isScheme(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// filePath extracts the local path from a file: URI.
func filePath(u *url.URL) (string, error) {
	if u.Host != "" && !strings.EqualFold(u.Host, "localhost") {
		return "", fmt.Errorf("%w: file URI names host %q; only local files can be read", ErrMalformedURI, u.Host)
	}
	if u.Opaque != "" || u.Path == "" || !strings.HasPrefix(u.Path, "/") {
		return "", fmt.Errorf("%w: file URI has no absolute path (want file:///abs/path)", ErrMalformedURI)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", fmt.Errorf("%w: file URI has a query or fragment (percent-encode '?' and '#' in file names)", ErrMalformedURI)
	}
	return u.Path, nil
}

// fetchFile hashes a local regular file in place, or streams any other
// readable file (a FIFO, a device) like stdin. A regular file of at most
// the memory limit is read into memory in the same pass (one open, one
// read), so that reading its bytes later does not read it again; Path still
// returns the file itself.
func (l limits) fetchFile(ctx context.Context, path string) (*Content, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	switch {
	case before.IsDir():
		return nil, fmt.Errorf("%w: %s is a directory", ErrUnreachable, abs)
	case !before.Mode().IsRegular():
		return l.spool(ctx, f, -1, abs)
	case before.Size() > l.max:
		return nil, &TooLargeError{Limit: l.max, Size: before.Size()}
	case before.Size() <= l.memCap:
		return l.readFile(ctx, f, abs, before)
	}
	// Hash it in one pass without copying it.
	p := newPass(ctx, abs)
	if err := l.stream(p, f, nil); err != nil {
		return nil, err
	}
	after, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	if !sameState(before, after) || after.Size() != p.n {
		return nil, fmt.Errorf("%w: %s changed while it was read", ErrChanged, abs)
	}
	return &Content{sum: p.sum(), size: p.n, head: p.head[:len(p.head):len(p.head)], local: abs, localInfo: after,
		tempDir: l.dir, tempPrefix: l.prefix}, nil
}

// readFile reads a small regular file into memory and hashes it. It asks for
// one byte more than the size Stat gave, to notice a file that grew, and
// stops at the end of the file, or as soon as a read falls short with
// exactly that size in hand (the file then ended there: one read is enough).
// A file that changes during or after the read keeps the bytes read (which
// the hash covers), and Path, which hands out the file itself, reports
// ErrChanged since the file is no longer in the state Stat saw.
func (l limits) readFile(ctx context.Context, f *os.File, abs string, fi os.FileInfo) (*Content, error) {
	p := pass{ctx: ctx, what: abs}
	buf := make([]byte, fi.Size()+1)
	n := 0
	for n < len(buf) {
		m, err := p.read(f, buf[n:])
		n += m
		if err == io.EOF || int64(n) == fi.Size() {
			break
		} else if err != nil {
			return nil, p.fail(err)
		}
	}
	if int64(n) != fi.Size() {
		return nil, fmt.Errorf("%w: %s changed while it was read", ErrChanged, abs)
	}
	c := newMemContent(buf[:n:n], sha256Hex(buf[:n]), l.dir, l.prefix)
	c.local, c.localInfo = abs, fi
	return c, nil
}

// fetchData decodes a data: URI. Base64 that the standard decoder accepts
// and that fits in memory is decoded in one call; larger base64 that starts
// as plain standard base64 is streamed through spool by stdBase64Reader,
// in large chunks; anything else (other alphabets, percent-escapes, spaces)
// is validated, then streamed through spool by the lenient decoder.
func (l limits) fetchData(ctx context.Context, uri string) (*Content, error) {
	h, err := parseDataHeader(uri, false)
	if err != nil {
		return nil, err
	}
	if h.base64 {
		n := decodedLen(h.payload)
		if int64(n) <= l.memCap {
			buf := make([]byte, n)
			if n, err := base64.StdEncoding.Decode(buf, []byte(h.payload)); err == nil {
				return l.memData(buf[:n])
			}
		} else if int64(len(h.payload)/4*3+2) <= l.max { // no payload this long can decode past max
			// n is the size when the payload is plain all along, else an
			// overestimate: content spills from the first byte in any case
			// (even should it turn out to fit in memory after all).
			if r := newStdBase64Reader(h.payload, h.payloadAt, stdChunk); r.plainStart() {
				return l.spool(ctx, r, int64(n), "data: URI")
			}
		}
	} else if int64(len(h.payload)) <= l.memCap && strings.IndexByte(h.payload, '%') < 0 {
		return l.memData([]byte(h.payload))
	}
	d := DataURI{raw: h.payload, enc: encPercent}
	if h.base64 {
		d.enc = encBase64
	}
	if d.size, err = scanPayload(h.payload, h.base64, h.payloadAt); err != nil {
		return nil, err
	}
	return l.spool(ctx, d.Reader(), d.size, "data: URI")
}

func (l limits) memData(b []byte) (*Content, error) {
	if int64(len(b)) > l.max {
		return nil, &TooLargeError{Limit: l.max, Size: int64(len(b))}
	}
	return newMemContent(b, sha256Hex(b), l.dir, l.prefix), nil
}

// fetchCustom reads a scheme registered in Policy.Openers.
func (l limits) fetchCustom(ctx context.Context, open Opener, uri string) (*Content, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedURI, unwrapURLError(err))
	}
	what := redact(u)
	rc, err := open(ctx, u)
	if err != nil {
		if ctx.Err() != nil {
			return nil, cancelledError(ctx, what)
		}
		for _, kind := range []error{ErrNotAllowed, ErrTooLarge, ErrUnreachable, ErrMalformedURI, ErrChecksum} {
			if errors.Is(err, kind) {
				return nil, err
			}
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, what, err)
	}
	if rc == nil {
		return nil, fmt.Errorf("%w: %s: the scheme's Opener returned no reader", ErrUnreachable, what)
	}
	defer rc.Close()
	return l.spool(ctx, rc, -1, what)
}

// fetchHTTP GETs u and streams the body.
func (p Policy) fetchHTTP(ctx context.Context, l limits, u *url.URL) (*Content, error) {
	what := redact(u)
	client := p.Client
	switch {
	case client != nil && p.PublicOnly:
		return nil, fmt.Errorf("%w: PublicOnly applies to the default client; set fetch.PublicOnlyControl on your Client's dialer", ErrBadPolicy)
	case p.PublicOnly:
		client = publicClient()
	case client == nil:
		client = defaultClient()
	}
	c := *client // a shallow copy sharing the Transport, to wrap CheckRedirect
	var refused string
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if s := strings.ToLower(req.URL.Scheme); !p.allows(s) {
			refused = s
			return ErrNotAllowed
		}
		if client.CheckRedirect != nil {
			return client.CheckRedirect(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedURI, err)
	}
	req.Header.Set("User-Agent", "psengine-fetch")
	resp, err := c.Do(req)
	if err != nil {
		var notPublic *notPublicError
		switch {
		case ctx.Err() != nil:
			return nil, cancelledError(ctx, "GET "+what)
		case refused != "" && errors.Is(err, ErrNotAllowed):
			return nil, fmt.Errorf("%w: GET %s redirects to scheme %q", ErrNotAllowed, what, refused)
		case errors.As(err, &notPublic): // PublicOnlyControl refused the address
			e := *notPublic
			e.get = "GET " + what
			return nil, &e
		case errors.Is(err, ErrNotAllowed): // the host's CheckRedirect or Transport refused
			return nil, fmt.Errorf("GET %s: %w", what, unwrapURLError(err))
		}
		return nil, fmt.Errorf("%w: GET %s: %w", ErrUnreachable, what, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &StatusError{Code: resp.StatusCode, Status: resp.Status, URL: what}
	}
	return l.spool(ctx, resp.Body, resp.ContentLength, "GET "+what)
}

var defaultClient = sync.OnceValue(func() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   32, // many workers fetch from the same artifact store
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: time.Minute,
		ExpectContinueTimeout: time.Second,
	}}
})

// redact renders u for messages: no user info, no query (it may hold
// credentials, as presigned URLs do), no fragment.
func redact(u *url.URL) string {
	v := *u
	v.User = nil
	hadQuery := v.RawQuery != "" || v.ForceQuery
	v.RawQuery, v.ForceQuery, v.Fragment, v.RawFragment = "", false, "", ""
	s := v.String()
	if hadQuery {
		s += "?..."
	}
	return s
}

// unwrapURLError drops *url.Error's wrapping, whose message repeats the
// whole URL (query included).
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// sha256Hex returns the lowercase hex SHA-256 of b (one allocation).
func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:])
	return string(h[:])
}

// decodedLen is the exact size of padded standard base64 payload once
// decoded (base64's DecodedLen counts the padding as data, which can put the
// buffer in a size class 20% larger). Payloads not made of whole quanta get
// DecodedLen, and fail to decode.
func decodedLen(payload string) int {
	n := len(payload)
	if n == 0 || n%4 != 0 {
		return base64.StdEncoding.DecodedLen(n)
	}
	pad := 0
	if payload[n-1] == '=' {
		pad++
		if payload[n-2] == '=' {
			pad++
		}
	}
	return n/4*3 - pad
}
