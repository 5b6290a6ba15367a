package psengine

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/polyswarm/psengine/bid"
)

// ArtifactType says what a bounty asks to scan: a file's bytes or a URL.
type ArtifactType string

const (
	// FileArtifact: the artifact URI points at the bytes to scan.
	FileArtifact ArtifactType = "file"
	// URLArtifact: the artifact URI is the URL to scan; its content is the
	// URL text, of type text/uri-list.
	URLArtifact ArtifactType = "url"
)

// ParseArtifactType accepts the casings seen on the wire: file, FILE, File,
// url, URL, Url. Any other spelling is an error.
func ParseArtifactType(s string) (ArtifactType, error) {
	switch s {
	case "file", "FILE", "File":
		return FileArtifact, nil
	case "url", "URL", "Url":
		return URLArtifact, nil
	}
	return "", fmt.Errorf("artifact_type %q is neither file nor url", s)
}

// Phase is the bounty's phase: assertions carry a bid, arbitration votes do not.
type Phase string

const (
	Assertion   Phase = "assertion"
	Arbitration Phase = "arbitration"
)

// BountyID is a bounty's id as received: an integer of any size or a string
// such as a UUID. It is echoed back exactly as it came.
type BountyID struct {
	raw    string
	number bool
}

// NumberID returns the id for an integer given in decimal digits.
func NumberID(digits string) (BountyID, error) {
	if !isDigits(digits) {
		return BountyID{}, fmt.Errorf("id %q is not a non-negative integer", digits)
	}
	return BountyID{raw: digits, number: true}, nil
}

// StringID returns the id for a string such as a UUID.
func StringID(s string) BountyID { return BountyID{raw: s} }

// String returns the id's text (digits for integers).
func (id BountyID) String() string { return id.raw }

// IsZero reports whether the id is unset.
func (id BountyID) IsZero() bool { return id.raw == "" }

// IsNumber reports whether the id came as a JSON integer.
func (id BountyID) IsNumber() bool { return id.number }

// MarshalJSON writes the id as it came: digits for an integer, a string otherwise.
func (id BountyID) MarshalJSON() ([]byte, error) {
	if id.number {
		return []byte(id.raw), nil
	}
	return json.Marshal(id.raw)
}

// UnmarshalJSON accepts a JSON integer (any size, kept as digits) or a
// non-empty string.
func (id *BountyID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		s, err := jsonString(b)
		if err != nil {
			return err
		}
		if strings.TrimSpace(s) == "" {
			return errors.New("id is an empty string")
		}
		*id = BountyID{raw: s}
		return nil
	}
	n, err := NumberID(string(b))
	if err != nil {
		return err
	}
	*id = n
	return nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Bounty is a request to scan one artifact (PROTOCOL §1). Parse it with
// ParseBounty or json.Unmarshal, which accept every variant seen on the wire;
// json.Marshal writes the documented form.
type Bounty struct {
	ID           BountyID
	ArtifactType ArtifactType
	ArtifactURI  string
	SHA256       string    // lowercase hex of the artifact bytes; "" when not given
	MIMEType     string    // "" when not given
	Expiration   time.Time // the answer is due by then; zero: no deadline
	ResponseURL  string    // where the answer is POSTed; "" for local bounties
	Rules        bid.Rules // ParseBounty fills bid.DefaultRules when absent; zero means the same
	Phase        Phase     // Assertion or Arbitration
	// Metadata is the bounty's metadata object as received (nil when absent).
	Metadata json.RawMessage
	Duration time.Duration // 0 when not given
	TaskedAt time.Time     // zero when not given
}

// IsVote reports whether the answer to b is a vote (arbitration phase, no bid).
func (b Bounty) IsVote() bool { return b.Phase == Arbitration }

// BountyError says which field of a bounty is malformed. It wraps
// ErrMalformedBounty.
type BountyError struct {
	Field  string
	Reason string
}

func (e *BountyError) Error() string {
	if e.Field == "" {
		return "malformed bounty: " + e.Reason
	}
	return fmt.Sprintf("malformed bounty: %s: %s", e.Field, e.Reason)
}

func (e *BountyError) Unwrap() error { return ErrMalformedBounty }

func fieldErr(field string, err error) error {
	return &BountyError{Field: field, Reason: err.Error()}
}

// ParseBounty parses one bounty from JSON, accepting every form of
// PROTOCOL §1: integer ids beyond 2^53 and string ids, legacy names (guid,
// artifact_url), any accepted casing of artifact_type, sha256 and mimetype
// top level or under metadata, the four expiration forms, duration as a
// number or a string. Unknown fields are ignored. Errors are *BountyError.
func ParseBounty(data []byte) (Bounty, error) {
	var b Bounty
	err := b.UnmarshalJSON(data)
	return b, err
}

// wireRules splits the rules object in the bounty's single decoding pass.
type wireRules struct {
	Min json.RawMessage `json:"min_allowed_bid"`
	Max json.RawMessage `json:"max_allowed_bid"`
}

type wireBounty struct {
	ID           json.RawMessage `json:"id"`
	GUID         json.RawMessage `json:"guid"`
	ArtifactType *string         `json:"artifact_type"`
	ArtifactURI  *string         `json:"artifact_uri"`
	ArtifactURL  *string         `json:"artifact_url"`
	SHA256       *string         `json:"sha256"`
	MIMEType     *string         `json:"mimetype"`
	Expiration   json.RawMessage `json:"expiration"`
	ResponseURL  *string         `json:"response_url"`
	Rules        *wireRules      `json:"rules"`
	Phase        *string         `json:"phase"`
	Metadata     json.RawMessage `json:"metadata"`
	Duration     json.RawMessage `json:"duration"`
	TaskedAt     json.RawMessage `json:"tasked_at"`
}

func present(raw json.RawMessage) bool {
	return len(raw) > 0 && string(bytes.TrimSpace(raw)) != "null"
}

// UnmarshalJSON implements json.Unmarshaler; see ParseBounty.
func (b *Bounty) UnmarshalJSON(data []byte) error {
	var w wireBounty
	if err := decodeWire(data, &w); err != nil {
		var typ *wireTypeError
		switch {
		case errors.As(err, &typ) && typ.Field != "":
			return &BountyError{Field: typ.Field, Reason: "has the wrong JSON type (" + typ.Value + ")"}
		case errors.As(err, &typ):
			return &BountyError{Reason: "not a JSON object: " + typ.Value}
		default:
			return &BountyError{Reason: "not JSON: " + err.Error()}
		}
	}
	var out Bounty

	idRaw := w.ID
	if !present(idRaw) {
		idRaw = w.GUID
	}
	if !present(idRaw) {
		return &BountyError{Field: "id", Reason: "missing"}
	}
	if err := out.ID.UnmarshalJSON(idRaw); err != nil {
		return fieldErr("id", err)
	}

	if w.ArtifactType == nil {
		return &BountyError{Field: "artifact_type", Reason: "missing"}
	}
	t, err := ParseArtifactType(*w.ArtifactType)
	if err != nil {
		return fieldErr("artifact_type", err)
	}
	out.ArtifactType = t

	switch {
	case w.ArtifactURI != nil && *w.ArtifactURI != "":
		out.ArtifactURI = *w.ArtifactURI
	case w.ArtifactURL != nil && *w.ArtifactURL != "":
		out.ArtifactURI = *w.ArtifactURL
	default:
		return &BountyError{Field: "artifact_uri", Reason: "missing"}
	}

	var meta struct {
		SHA256   *string `json:"sha256"`
		MIMEType *string `json:"mimetype"`
	}
	if present(w.Metadata) {
		trimmed := bytes.TrimSpace(w.Metadata)
		if trimmed[0] != '{' {
			return &BountyError{Field: "metadata", Reason: "is not an object"}
		}
		if w.SHA256 == nil || *w.SHA256 == "" || w.MIMEType == nil || *w.MIMEType == "" {
			_ = json.Unmarshal(trimmed, &meta) // best effort: odd types under metadata are not ours to refuse
		}
		out.Metadata = canonicalJSON(trimmed)
	}
	sha := w.SHA256
	if sha == nil || *sha == "" {
		sha = meta.SHA256
	}
	if sha != nil && *sha != "" {
		s := strings.ToLower(strings.TrimSpace(*sha))
		if len(s) != 64 || !isHex(s) {
			return &BountyError{Field: "sha256", Reason: fmt.Sprintf("%q is not 64 hex digits", *sha)}
		}
		out.SHA256 = s
	}
	mt := w.MIMEType
	if mt == nil || *mt == "" {
		mt = meta.MIMEType
	}
	if mt != nil {
		out.MIMEType = *mt
	}

	if present(w.Expiration) {
		if out.Expiration, err = parseTimestamp(w.Expiration); err != nil {
			return fieldErr("expiration", err)
		}
	}
	if present(w.TaskedAt) {
		if out.TaskedAt, err = parseTimestamp(w.TaskedAt); err != nil {
			return fieldErr("tasked_at", err)
		}
	}
	if present(w.Duration) {
		if out.Duration, err = parseSeconds(w.Duration); err != nil {
			return fieldErr("duration", err)
		}
	}

	if w.ResponseURL != nil && *w.ResponseURL != "" {
		u, err := url.Parse(*w.ResponseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return &BountyError{Field: "response_url", Reason: fmt.Sprintf("%q is not an http(s) URL", *w.ResponseURL)}
		}
		out.ResponseURL = *w.ResponseURL
	}

	if w.Rules != nil {
		if out.Rules, err = bid.RulesFromJSON(w.Rules.Min, w.Rules.Max); err != nil {
			return fieldErr("rules", err)
		}
	}
	out.Rules = out.Rules.OrDefault()
	if err := out.Rules.Validate(); err != nil {
		return fieldErr("rules", err)
	}

	out.Phase = Assertion
	if w.Phase != nil && *w.Phase != "" {
		switch strings.ToLower(*w.Phase) {
		case "assertion":
		case "arbitration":
			out.Phase = Arbitration
		default:
			return &BountyError{Field: "phase", Reason: fmt.Sprintf("%q is neither assertion nor arbitration", *w.Phase)}
		}
	}
	*b = out
	return nil
}

// canonicalJSON returns valid JSON raw in the form encoding/json writes
// it (compact, HTML-escaped), so that what is echoed back reads back the
// same. Input already in that form is returned as is.
func canonicalJSON(raw []byte) []byte {
	if !needsCanonical(raw) {
		return append(json.RawMessage(nil), raw...)
	}
	var compact, escaped bytes.Buffer
	_ = json.Compact(&compact, raw) // raw was validated by the decoder
	json.HTMLEscape(&escaped, compact.Bytes())
	return escaped.Bytes()
}

// needsCanonical reports whether raw holds white space or a character that
// encoding/json escapes (<, >, &, U+2028, U+2029): a byte scan, no rune decoding.
func needsCanonical(raw []byte) bool {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\r', '\n', '<', '>', '&':
			return true
		case 0xe2: // first byte of U+2028 and U+2029 (and of other runes: rare)
			return true
		}
	}
	return false
}

// jsonString returns the string a JSON string literal holds; the decoder
// validated it already, so only escapes need real work.
func jsonString(raw []byte) (string, error) {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return string(raw[1 : len(raw)-1]), nil
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// timestamp layouts seen on the wire; a missing zone means UTC.
var timestampLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z0700",
	"2006-01-02 15:04:05.999999999",
}

func parseTimestamp(raw json.RawMessage) (time.Time, error) {
	raw = bytes.TrimSpace(raw)
	if raw[0] != '"' {
		// Seconds since the epoch, as a number.
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e11 {
			return time.Time{}, fmt.Errorf("%s is not a timestamp", raw)
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	}
	s, err := jsonString(raw)
	if err != nil {
		return time.Time{}, err
	}
	s = strings.TrimSpace(s)
	if layout := timestampLayout(s); layout != "" {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	for _, layout := range timestampLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a timestamp", s)
}

// timestampLayout guesses the layout of s from its shape, so that the
// usual forms parse in one attempt ("" when unsure).
func timestampLayout(s string) string {
	if len(s) < 19 || (s[10] != 'T' && s[10] != ' ') {
		return ""
	}
	sep := s[10] == ' '
	tail := s[19:]
	var layout string
	switch {
	case strings.HasSuffix(tail, "Z"):
		layout = time.RFC3339Nano
	case len(tail) >= 6 && (tail[len(tail)-6] == '+' || tail[len(tail)-6] == '-') && tail[len(tail)-3] == ':':
		layout = time.RFC3339Nano
	case len(tail) >= 5 && (tail[len(tail)-5] == '+' || tail[len(tail)-5] == '-'):
		layout = "2006-01-02T15:04:05.999999999Z0700"
	case strings.IndexAny(tail, "+-Z") < 0:
		layout = "2006-01-02T15:04:05.999999999"
	default:
		return ""
	}
	if sep {
		layout = strings.Replace(layout, "T", " ", 1)
	}
	return layout
}

func parseSeconds(raw json.RawMessage) (time.Duration, error) {
	raw = bytes.TrimSpace(raw)
	s := string(raw)
	if raw[0] == '"' {
		var err error
		if s, err = jsonString(raw); err != nil {
			return 0, err
		}
	}
	s = strings.TrimSpace(s)
	if !strings.ContainsAny(s, "eE") {
		// Decimal seconds: parsed exactly.
		if d, err := time.ParseDuration(s + "s"); err == nil && d >= 0 && !strings.HasPrefix(s, "+") {
			return d, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > 1e9 {
		return 0, fmt.Errorf("%q is not a number of seconds", s)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// wireBountyOut is the documented form written by MarshalJSON.
type wireBountyOut struct {
	ID           BountyID        `json:"id"`
	ArtifactType ArtifactType    `json:"artifact_type"`
	ArtifactURI  string          `json:"artifact_uri"`
	SHA256       *string         `json:"sha256"`
	MIMEType     *string         `json:"mimetype"`
	Expiration   *string         `json:"expiration,omitempty"`
	ResponseURL  string          `json:"response_url,omitempty"`
	Rules        bid.Rules       `json:"rules"`
	Phase        Phase           `json:"phase"`
	Metadata     json.RawMessage `json:"metadata,omitempty"`
	Duration     json.Number     `json:"duration,omitempty"`
	TaskedAt     *string         `json:"tasked_at,omitempty"`
}

// MarshalJSON writes the documented wire form: lowercase artifact_type,
// timestamps in RFC 3339 UTC, the id exactly as received, the rules in
// force (bid.DefaultRules when the bounty had none).
func (b Bounty) MarshalJSON() ([]byte, error) {
	w := wireBountyOut{
		ID:           b.ID,
		ArtifactType: b.ArtifactType,
		ArtifactURI:  b.ArtifactURI,
		ResponseURL:  b.ResponseURL,
		Rules:        b.Rules.OrDefault(),
		Phase:        b.Phase,
		Metadata:     b.Metadata,
	}
	if w.Phase == "" {
		w.Phase = Assertion
	}
	if b.SHA256 != "" {
		w.SHA256 = &b.SHA256
	}
	if b.MIMEType != "" {
		w.MIMEType = &b.MIMEType
	}
	if !b.Expiration.IsZero() {
		s := b.Expiration.UTC().Format(time.RFC3339Nano)
		w.Expiration = &s
	}
	if !b.TaskedAt.IsZero() {
		s := b.TaskedAt.UTC().Format(time.RFC3339Nano)
		w.TaskedAt = &s
	}
	if b.Duration > 0 {
		// Exact decimal seconds, so the value reads back to the nanosecond.
		w.Duration = json.Number(strings.TrimRight(strings.TrimRight(
			fmt.Sprintf("%d.%09d", b.Duration/time.Second, b.Duration%time.Second), "0"), "."))
	}
	return json.Marshal(w)
}

// Validate reports whether b has what an engine needs to answer it.
func (b Bounty) Validate() error {
	switch {
	case b.ID.IsZero():
		return &BountyError{Field: "id", Reason: "missing"}
	case b.ArtifactType != FileArtifact && b.ArtifactType != URLArtifact:
		return &BountyError{Field: "artifact_type", Reason: fmt.Sprintf("%q is neither file nor url", b.ArtifactType)}
	case b.ArtifactURI == "":
		return &BountyError{Field: "artifact_uri", Reason: "missing"}
	case b.Phase != "" && b.Phase != Assertion && b.Phase != Arbitration:
		return &BountyError{Field: "phase", Reason: fmt.Sprintf("%q is neither assertion nor arbitration", b.Phase)}
	}
	if b.Rules != (bid.Rules{}) {
		if err := b.Rules.OrDefault().Validate(); err != nil {
			return fieldErr("rules", err)
		}
	}
	return nil
}

// LocalBounty forges the bounty for an artifact given locally (a path, stdin
// or a URI to analyze): its id is derived from the type and the content's
// sha256, it carries the content's sha256 and mimetype, bid.DefaultRules,
// the assertion phase, no response URL, and expires ttl after now.
func LocalBounty(t ArtifactType, uri, sha256Hex, mimetype string, now time.Time, ttl time.Duration) Bounty {
	return Bounty{
		ID:           localID(t, sha256Hex),
		ArtifactType: t,
		ArtifactURI:  uri,
		SHA256:       sha256Hex,
		MIMEType:     mimetype,
		Expiration:   now.Add(ttl).UTC(),
		Rules:        bid.DefaultRules,
		Phase:        Assertion,
	}
}

// localID derives a UUID-shaped id (version 8, RFC 9562) from what identifies
// a local artifact, so the same input always gets the same id: the first
// 16 bytes of the content's sha256, marked with the artifact type.
func localID(t ArtifactType, sha256Hex string) BountyID {
	var u [16]byte
	if n, err := hex.Decode(u[:], []byte(sha256Hex[:min(32, len(sha256Hex))])); err != nil || n != 16 {
		sum := sha256.Sum256([]byte(sha256Hex)) // not a sha256: hash whatever it is
		copy(u[:], sum[:])
	}
	if t == URLArtifact {
		u[0] ^= 0x55
	}
	u[6] = u[6]&0x0f | 0x80 // version 8
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	hex.Encode(b[9:13], u[4:6])
	hex.Encode(b[14:18], u[6:8])
	hex.Encode(b[19:23], u[8:10])
	hex.Encode(b[24:36], u[10:16])
	b[8], b[13], b[18], b[23] = '-', '-', '-', '-'
	return StringID(string(b[:]))
}
