package fetch

import (
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// DataURI is a parsed data: URI (RFC 2397): a media type, its parameters and a
// payload that is either base64 or percent-encoded.
//
// Parsing is lenient where real producers differ and strict where the bytes
// would be ambiguous:
//   - the "data:" prefix and the ";base64" marker are case-insensitive, and
//     spaces around the header's parts are ignored (nothing may precede
//     "data:");
//   - base64 may use the standard or the URL-safe alphabet (or a mix), may omit
//     its padding, and may contain ASCII whitespace and percent-escapes
//     ("%2B" for "+"); data after padding and a lone trailing character are errors;
//   - a non-base64 payload is taken byte for byte except for %XX escapes, which
//     must be well formed ("#" and other characters are kept literally);
//   - the media type must be "type/subtype" made of RFC 2045 tokens, or empty
//     (then "text/plain" with charset US-ASCII, as RFC 2397 says); parameters
//     must be name=value with a token name and a percent-decoded value.
//
// A DataURI is a value: copy it freely. The payload is kept encoded (a parsed
// DataURI shares the string it was parsed from) and decoded on demand by
// Reader, so a large payload is never decoded all at once.
type DataURI struct {
	// MediaType is the lowercase "type/subtype"; "text/plain" when the URI
	// names none.
	MediaType string
	// Params holds the media type's parameters: lowercase names,
	// percent-decoded values. When the URI names no media type and no charset,
	// charset is "US-ASCII". Never nil after ParseDataURI; the first of
	// duplicate names wins.
	Params map[string]string
	// Base64 reports whether the URI's payload was base64-encoded; String
	// encodes the payload the same way (percent-encoding otherwise).
	Base64 bool

	raw  string     // payload as found in the URI (or the bytes themselves, for encRaw)
	enc  payloadEnc // how raw is encoded
	size int64      // decoded size
}

type payloadEnc uint8

const (
	encRaw     payloadEnc = iota // raw holds the payload bytes themselves
	encPercent                   // raw is percent-encoded
	encBase64                    // raw is (lenient) base64
)

// NewDataURI builds a DataURI from a media type, its parameters and the
// payload bytes (all copied). Its String form is base64-encoded. The media
// type and parameter names are used as given (String does not validate them).
func NewDataURI(mediaType string, params map[string]string, payload []byte) DataURI {
	p := maps.Clone(params)
	if p == nil {
		p = map[string]string{}
	}
	return DataURI{MediaType: mediaType, Params: p, Base64: true, raw: string(payload), enc: encRaw, size: int64(len(payload))}
}

// ParseDataURI parses s as a data: URI (see DataURI for what is accepted) and
// validates the whole payload without decoding it, so Reader never fails on
// a parsed DataURI. Errors match ErrMalformedURI and say what is wrong and
// where.
func ParseDataURI(s string) (DataURI, error) {
	h, err := parseDataHeader(s, true)
	if err != nil {
		return DataURI{}, err
	}
	d := DataURI{MediaType: h.mediaType, Params: h.params, Base64: h.base64, raw: h.payload, enc: encPercent}
	if h.base64 {
		d.enc = encBase64
	}
	d.size, err = scanPayload(h.payload, h.base64, h.payloadAt)
	if err != nil {
		return DataURI{}, err
	}
	return d, nil
}

// Size returns the decoded payload's size in bytes.
func (d DataURI) Size() int64 { return d.size }

// Reader returns a reader of the decoded payload. It decodes in small chunks
// as it is read (a few KiB of buffers whatever the payload size). Each call
// returns a fresh reader from the start.
func (d DataURI) Reader() io.Reader {
	switch d.enc {
	case encBase64:
		return &base64Reader{src: d.raw}
	case encPercent:
		if strings.IndexByte(d.raw, '%') < 0 {
			return strings.NewReader(d.raw)
		}
		return &percentReader{src: d.raw}
	default:
		return strings.NewReader(d.raw)
	}
}

// String formats d as a canonical data: URI: the media type, the parameters
// sorted by name with percent-encoded values, ";base64" when d.Base64, then
// the payload (standard base64 with padding, or percent-encoded). Parsing the
// result gives back d's media type, parameters and payload.
func (d DataURI) String() string {
	var b strings.Builder
	b.WriteString("data:")
	b.WriteString(d.MediaType)
	for _, k := range slices.Sorted(maps.Keys(d.Params)) {
		b.WriteByte(';')
		b.WriteString(k)
		b.WriteByte('=')
		writeEscaped(&b, d.Params[k])
	}
	payload, err := io.ReadAll(d.Reader())
	if err != nil {
		// Only reachable for a DataURI whose unexported state was not built by
		// this package's constructors; format what could be decoded.
		payload = nil
	}
	if d.Base64 {
		b.WriteString(";base64,")
		b.WriteString(base64.StdEncoding.EncodeToString(payload))
	} else {
		b.WriteByte(',')
		writeEscaped(&b, string(payload))
	}
	return b.String()
}

// dataHeader is the parsed part of a data: URI before its first comma.
type dataHeader struct {
	mediaType string
	params    map[string]string // nil unless asked for
	base64    bool
	payload   string // everything after the first comma
	payloadAt int    // offset of payload in the original string, for error messages
}

// parseDataHeader splits a data: URI and validates its header. With
// wantParams false it skips building the media type and parameter map (the
// Fetch fast path needs only the base64 flag) but validates just as much.
func parseDataHeader(s string, wantParams bool) (dataHeader, error) {
	if len(s) < 5 || !strings.EqualFold(s[:5], "data:") {
		return dataHeader{}, fmt.Errorf("%w: not a data: URI", ErrMalformedURI)
	}
	rest := s[5:]
	comma := strings.IndexByte(rest, ',')
	if comma < 0 {
		return dataHeader{}, fmt.Errorf("%w: data: URI has no comma before its payload", ErrMalformedURI)
	}
	h := dataHeader{payload: rest[comma+1:], payloadAt: 5 + comma + 1}
	header := rest[:comma]
	if semi := strings.LastIndexByte(header, ';'); semi >= 0 && strings.EqualFold(strings.TrimSpace(header[semi+1:]), "base64") {
		h.base64 = true
		header = header[:semi]
	}
	typ, params, _ := strings.Cut(header, ";")
	typ = strings.TrimSpace(typ)
	if typ == "" {
		h.mediaType = "text/plain"
	} else {
		main, sub, ok := strings.Cut(typ, "/")
		if !ok || !isToken(main) || !isToken(sub) {
			return dataHeader{}, fmt.Errorf("%w: data: URI media type %q is not type/subtype", ErrMalformedURI, truncate(typ, 64))
		}
		if wantParams { // only ParseDataURI reports the media type
			h.mediaType = strings.ToLower(typ)
		}
	}
	if wantParams {
		h.params = map[string]string{}
	}
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		name, value, ok := strings.Cut(p, "=")
		name = strings.TrimSpace(name)
		if !ok || !isToken(name) {
			return dataHeader{}, fmt.Errorf("%w: data: URI parameter %q is not name=value", ErrMalformedURI, truncate(p, 64))
		}
		decoded, err := percentDecode(strings.TrimSpace(value))
		if err != nil {
			return dataHeader{}, fmt.Errorf("%w: data: URI parameter %s: %w", ErrMalformedURI, name, err)
		}
		if h.params != nil {
			name = strings.ToLower(name)
			if _, dup := h.params[name]; !dup {
				h.params[name] = decoded
			}
		}
	}
	if h.params != nil && typ == "" {
		if _, ok := h.params["charset"]; !ok {
			h.params["charset"] = "US-ASCII"
		}
	}
	return h, nil
}

// scanPayload validates an encoded payload and returns its decoded size.
// base is the payload's offset in the URI, for error messages.
func scanPayload(p string, isBase64 bool, base int) (int64, error) {
	if !isBase64 {
		escapes := 0
		for i := strings.IndexByte(p, '%'); i >= 0; {
			if _, ok := unhexAt(p, i); !ok {
				return 0, fmt.Errorf("%w: data: URI has a bad percent-escape at byte %d", ErrMalformedURI, base+i)
			}
			escapes++
			next := strings.IndexByte(p[i+3:], '%')
			if next < 0 {
				break
			}
			i += 3 + next
		}
		return int64(len(p) - 2*escapes), nil
	}
	var chars int64
	pads := 0
	for i := 0; i < len(p); i++ {
		at, c := i, p[i]
		if c == '%' {
			v, ok := unhexAt(p, i)
			if !ok {
				return 0, fmt.Errorf("%w: data: URI has a bad percent-escape at byte %d", ErrMalformedURI, base+i)
			}
			c = v
			i += 2
		}
		switch {
		case base64Value[c] != invalid:
			if pads > 0 {
				return 0, fmt.Errorf("%w: data: URI has base64 data after padding at byte %d", ErrMalformedURI, base+at)
			}
			chars++
		case c == '=':
			if pads++; pads > 2 {
				return 0, fmt.Errorf("%w: data: URI has too much base64 padding at byte %d", ErrMalformedURI, base+at)
			}
		case isSpace(c):
		default:
			return 0, fmt.Errorf("%w: data: URI has invalid base64 character %q at byte %d", ErrMalformedURI, c, base+at)
		}
	}
	if chars%4 == 1 {
		return 0, fmt.Errorf("%w: data: URI base64 payload is truncated (one character left over)", ErrMalformedURI)
	}
	return chars/4*3 + [4]int64{0, 0, 1, 2}[chars%4], nil
}

const invalid = 0xff

// base64Value maps both alphabets (standard and URL-safe) to the standard one.
var base64Value = func() (t [256]byte) {
	for i := range t {
		t[i] = invalid
	}
	const std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(std); i++ {
		t[std[i]] = std[i]
	}
	t['-'], t['_'] = '+', '/'
	return t
}()

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'
}

// isToken reports whether s is an RFC 2045 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenChar[s[i]] {
			return false
		}
	}
	return true
}

// tokenChar says which bytes may appear in an RFC 2045 token: printable
// ASCII except space and the tspecials.
var tokenChar = func() (t [256]bool) {
	for c := '!'; c < 0x7f; c++ {
		t[c] = !strings.ContainsRune(`()<>@,;:\"/[]?=`, c)
	}
	return t
}()

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unhexAt decodes the escape "%XX" at s[i].
func unhexAt(s string, i int) (byte, bool) {
	if i+2 >= len(s) {
		return 0, false
	}
	hi, ok1 := unhex(s[i+1])
	lo, ok2 := unhex(s[i+2])
	return hi<<4 | lo, ok1 && ok2
}

func percentDecode(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		v, ok := unhexAt(s, i)
		if !ok {
			return "", fmt.Errorf("bad percent-escape at byte %d", i)
		}
		b.WriteByte(v)
		i += 2
	}
	return b.String(), nil
}

// writeEscaped percent-encodes every byte outside RFC 3986's unreserved set
// and a few safe sub-delimiters.
func writeEscaped(b *strings.Builder, s string) {
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~!$'()*+/:=@", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// percentReader decodes a validated percent-encoded payload as it is read.
type percentReader struct{ src string }

func (r *percentReader) Read(p []byte) (int, error) {
	if len(r.src) == 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && len(r.src) > 0 {
		c := r.src[0]
		if c != '%' {
			p[n], r.src, n = c, r.src[1:], n+1
			continue
		}
		v, ok := unhexAt(r.src, 0)
		if !ok {
			return n, fmt.Errorf("%w: data: URI has a bad percent-escape", ErrMalformedURI)
		}
		p[n], r.src, n = v, r.src[3:], n+1
	}
	return n, nil
}

// base64Reader decodes a lenient base64 payload (either alphabet, optional
// padding, whitespace, percent-escapes) in chunks as it is read.
type base64Reader struct {
	src   string             // raw payload not yet normalized
	chars [4096]byte         // normalized standard-alphabet characters
	nch   int                // chars[:nch] pending
	out   [4096 / 4 * 3]byte // decoded bytes not yet returned
	pend  []byte             // slice of out still to return
	done  bool               // src exhausted and every char decoded
	err   error              // sticky error
}

func (r *base64Reader) Read(p []byte) (int, error) {
	for len(r.pend) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		r.fill()
	}
	n := copy(p, r.pend)
	r.pend = r.pend[n:]
	return n, nil
}

// fill normalizes more source characters and decodes every complete quad (or,
// at the end, everything left).
func (r *base64Reader) fill() {
	for r.nch < len(r.chars) && len(r.src) > 0 {
		// Fast run: characters of either alphabet, mapped to the standard one.
		n := min(len(r.chars)-r.nch, len(r.src))
		i := 0
		for ; i < n; i++ {
			v := base64Value[r.src[i]]
			if v == invalid {
				break
			}
			r.chars[r.nch+i] = v
		}
		r.nch += i
		r.src = r.src[i:]
		if i == n {
			continue
		}
		// One special character: a percent-escape, padding or whitespace.
		c := r.src[0]
		step := 1
		if c == '%' {
			v, ok := unhexAt(r.src, 0)
			if !ok {
				r.err = fmt.Errorf("%w: data: URI has a bad percent-escape", ErrMalformedURI)
				return
			}
			c, step = v, 3
		}
		r.src = r.src[step:]
		switch {
		case base64Value[c] != invalid:
			r.chars[r.nch] = base64Value[c]
			r.nch++
		case c == '=' || isSpace(c):
			// Padding is optional and whitespace is ignored.
		default:
			r.err = fmt.Errorf("%w: data: URI has invalid base64 character %q", ErrMalformedURI, c)
			return
		}
	}
	use := r.nch / 4 * 4
	if len(r.src) == 0 {
		use, r.done = r.nch, true
	}
	n, err := base64.RawStdEncoding.Decode(r.out[:], r.chars[:use])
	if err != nil {
		r.err = fmt.Errorf("%w: data: URI has bad base64: %w", ErrMalformedURI, err)
		return
	}
	r.nch = copy(r.chars[:], r.chars[use:r.nch])
	r.pend = r.out[:n]
}

// stdChunk is how many payload characters stdBase64Reader decodes at once
// (48 KiB decoded).
const stdChunk = 64 << 10

// stdBase64Reader decodes a base64 payload to the same bytes, and fails with
// the same errors, as ParseDataURI's validation followed by its Reader, but
// fast while the payload is plain standard base64: chunks of stdChunk
// characters of the standard alphabet, the last of which may be any input
// base64.StdEncoding accepts (padding, line breaks). Those it decodes with
// base64.StdEncoding. From the first chunk that is anything else, it
// validates what is left with scanPayload and decodes it with base64Reader:
// every chunk before was whole quanta without padding, so the lenient
// decoding of the rest continues it exactly.
type stdBase64Reader struct {
	src     string        // payload not yet decoded
	at      int           // offset of src in the URI, for error messages
	chunk   int           // characters per chunk, a multiple of 4
	in      []byte        // a chunk of src, copied for Decode
	out     []byte        // backing array of pend
	pend    []byte        // decoded bytes not yet returned
	lenient *base64Reader // decodes the rest once a chunk was not plain
	err     error         // sticky: the rest is malformed
}

func newStdBase64Reader(payload string, at, chunk int) *stdBase64Reader {
	n := min(len(payload), chunk)
	return &stdBase64Reader{src: payload, at: at, chunk: chunk, in: make([]byte, n), out: make([]byte, n/4*3+3)}
}

func (r *stdBase64Reader) Read(p []byte) (int, error) {
	if len(r.pend) == 0 && r.lenient == nil && r.err == nil && r.src != "" {
		r.next()
	}
	switch {
	case len(r.pend) > 0:
		n := copy(p, r.pend)
		r.pend = r.pend[n:]
		return n, nil
	case r.err != nil:
		return 0, r.err
	case r.lenient != nil:
		return r.lenient.Read(p)
	}
	return 0, io.EOF
}

// next decodes the next chunk into pend or, when it is not plain standard
// base64, hands the rest of the payload to the lenient decoder.
func (r *stdBase64Reader) next() {
	c := min(len(r.src), r.chunk)
	last := c == len(r.src)
	n, err := base64.StdEncoding.Decode(r.out, r.in[:copy(r.in, r.src[:c])])
	// A chunk before the last must decode to exactly c/4*3 bytes: no line
	// breaks and no padding, which would shift the quanta after it.
	if err == nil && (last || n == c/4*3) {
		r.pend = r.out[:n]
		r.src, r.at = r.src[c:], r.at+c
		return
	}
	if _, err := scanPayload(r.src, true, r.at); err != nil {
		r.err = err
		return
	}
	r.lenient = &base64Reader{src: r.src}
}

// plainStart decodes the first chunk and reports whether it was plain
// standard base64 (a reader for which it is not decodes just as well, with
// the lenient decoder only).
func (r *stdBase64Reader) plainStart() bool {
	if r.src == "" {
		return false
	}
	r.next()
	return r.lenient == nil && r.err == nil
}
