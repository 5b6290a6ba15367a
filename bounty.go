package psengine

import (
	"bytes"
	"cmp"
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

	gojson "github.com/goccy/go-json"
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

// ParseArtifactType accepts file and url in any casing (strings.EqualFold).
// Any other word, the empty string included, is an error.
func ParseArtifactType(s string) (ArtifactType, error) {
	for _, t := range []ArtifactType{FileArtifact, URLArtifact} {
		if strings.EqualFold(s, string(t)) {
			return t, nil
		}
	}
	return "", fmt.Errorf("%q is neither file nor url", s)
}

// Phase is the bounty's phase: assertions carry a bid, arbitration votes do not.
type Phase string

const (
	Assertion   Phase = "assertion"
	Arbitration Phase = "arbitration"
)

// parsePhase accepts assertion and arbitration in any casing, with or
// without the "_window" suffix of older payloads; "" is Assertion.
func parsePhase(s string) (Phase, error) {
	if s == "" {
		return Assertion, nil
	}
	for _, p := range []Phase{Assertion, Arbitration} {
		if strings.EqualFold(s, string(p)) || strings.EqualFold(s, string(p)+"_window") {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q is neither assertion nor arbitration", s)
}

// BountyID is a bounty's id as received: an integer of any size or a string
// such as a UUID. It is echoed back exactly as it came.
type BountyID struct {
	raw    string
	number bool
}

// NumberID returns the id for an integer given in decimal digits.
func NumberID(digits string) (BountyID, error) {
	if !isDigits(digits) {
		return BountyID{}, fmt.Errorf("%q is not a non-negative integer", digits)
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
// string that is not blank (kept as a string, even if it holds digits).
func (id *BountyID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		s, err := unquote(b)
		if err != nil {
			return err
		}
		if strings.TrimSpace(s) == "" {
			return errors.New("is a blank string")
		}
		*id = StringID(s)
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

// Bounty is a request to scan one artifact (docs/PROTOCOL.md §1). Parse it with
// ParseBounty or json.Unmarshal, which accept every variant seen on the wire;
// json.Marshal writes the documented form.
type Bounty struct {
	ID           BountyID
	ArtifactType ArtifactType
	ArtifactURI  string
	SHA256       string // lowercase hex of the artifact bytes; "" when not given
	MIMEType     string // "" when not given
	// Expiration is when the answer is due. It is zero when the bounty gave
	// none or one that could not be read (ParseBounty does not fail on it):
	// the engine then applies its default window and logs that it did.
	Expiration  time.Time
	ResponseURL string    // where the answer is POSTed; "" for local bounties
	Rules       bid.Rules // ParseBounty fills bid.DefaultRules when absent; zero means the same
	Phase       Phase     // Assertion or Arbitration; "" means Assertion
	// Metadata is the bounty's metadata object as received (nil when absent).
	Metadata json.RawMessage
	Duration time.Duration // 0 when not given
	TaskedAt time.Time     // zero when not given
	// Warnings say what ParseBounty ignored in the bounty instead of
	// refusing it (a sha256 that is not one). The parser does not log
	// them: whoever receives the bounty does, once. They are not part of
	// the wire form.
	Warnings []string
}

// IsVote reports whether the answer to b is a vote (arbitration phase, no bid).
func (b Bounty) IsVote() bool { return b.Phase == Arbitration }

// Expired reports whether b's expiration has passed at now (a bounty
// without one never expires).
func (b Bounty) Expired(now time.Time) bool {
	return !b.Expiration.IsZero() && !now.Before(b.Expiration)
}

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

// ParseBounty parses one bounty from JSON as encoding/json reads it, liberal
// in what it accepts (docs/PROTOCOL.md §1):
//   - id: a JSON integer of any size (kept as digits) or a string such as a
//     UUID (kept as a string, even if numeric); legacy name guid;
//   - artifact_type: file or url in any casing; missing, null or "" is file;
//   - artifact_uri: legacy name artifact_url;
//   - sha256 and mimetype: top level, else under metadata; a sha256 that is
//     not 64 hex digits (such as "asdf", or "optional-for-file" from
//     PolySwarm's documentation) or not a string is ignored with a warning
//     (Bounty.Warnings), and the engine checks nothing but uses the
//     content's own sha256;
//   - expiration: RFC 3339, a zone as +0000, no zone (UTC), or seconds since
//     the epoch; missing, null, empty or unreadable leaves it zero;
//   - rules: missing, null, {} or [] are bid.DefaultRules, and a missing or
//     zero amount takes its default (bid.Rules.OrDefault);
//   - phase: assertion or arbitration in any casing, with or without a
//     "_window" suffix; missing, null or "" is assertion;
//   - duration: seconds as a number or a string; unknown fields are ignored.
//
// Object keys match case-insensitively, the last of repeated keys wins. It
// fails, with a *BountyError naming the field, on input that is not a JSON
// object, on a missing id or artifact URI, and on a value that is present but
// wrong: another artifact type or phase, a response_url that is not http(s), rules that are not valid bid.Rules,
// metadata that is not an object, a string field of another JSON type, an
// unreadable duration or tasked_at.
func ParseBounty(data []byte) (Bounty, error) {
	var b Bounty
	err := b.UnmarshalJSON(data)
	return b, err
}

// wireBounty is a bounty as it arrives. The values that need more than a
// string are read by their own UnmarshalJSON, in the decoder's one pass over
// the input, and keep what went wrong for the checks that follow: they never
// fail the decoder, which would then stop reporting the type errors of the
// string fields, and the checks keep their order whatever the input's order.
type wireBounty struct {
	ID           idValue         `json:"id"`
	GUID         idValue         `json:"guid"`
	ArtifactType string          `json:"artifact_type"`
	ArtifactURI  string          `json:"artifact_uri"`
	ArtifactURL  string          `json:"artifact_url"`
	SHA256       sha256Value     `json:"sha256"`
	MIMEType     string          `json:"mimetype"`
	Expiration   timeValue       `json:"expiration"`
	ResponseURL  string          `json:"response_url"`
	Rules        rulesValue      `json:"rules"`
	Phase        string          `json:"phase"`
	Metadata     json.RawMessage `json:"metadata"`
	Duration     secondsValue    `json:"duration"`
	TaskedAt     timeValue       `json:"tasked_at"`
}

// The decoder calls these with the value's JSON, null included, once per
// occurrence of the key (the last one wins); they must not keep the bytes.

// idValue is an id or guid: given when present and not null.
type idValue struct {
	given bool
	id    BountyID
	err   error
}

func (v *idValue) UnmarshalJSON(b []byte) error {
	*v = idValue{given: present(b)}
	if v.given {
		v.err = v.id.UnmarshalJSON(b)
	}
	return nil
}

// timeValue is a timestamp; zero when missing or null.
type timeValue struct {
	t   time.Time
	err error
}

func (v *timeValue) UnmarshalJSON(b []byte) error {
	*v = timeValue{}
	if present(b) {
		v.t, v.err = parseTimestamp(b)
	}
	return nil
}

// secondsValue is a duration; zero when missing or null.
type secondsValue struct {
	d   time.Duration
	err error
}

func (v *secondsValue) UnmarshalJSON(b []byte) error {
	*v = secondsValue{}
	if present(b) {
		v.d, v.err = parseSeconds(b)
	}
	return nil
}

// sha256Value is a sha256 as given: a string, or another JSON value that
// is ignored with a warning.
type sha256Value struct {
	s       string
	invalid string // the raw value, when it is not a string ("" when it is)
}

func (v *sha256Value) UnmarshalJSON(b []byte) error {
	*v = sha256Value{}
	if !present(b) {
		return nil
	}
	if b[0] == '"' {
		if s, err := unquote(b); err == nil {
			v.s = s
			return nil
		}
	}
	v.invalid = string(b)
	return nil
}

// checkSHA256 returns the sha256 given (from field) as lowercase hex, or ""
// with a warning when it is not 64 hex digits.
func checkSHA256(field, given string) (string, string) {
	s := strings.ToLower(strings.TrimSpace(given))
	if len(s) == 64 {
		if _, err := hex.DecodeString(s); err == nil {
			return s, ""
		}
	}
	return "", fmt.Sprintf("%s %.80q is not 64 hex digits: ignored, the content's own sha256 is used", field, given)
}

// rulesValue is the rules in force; the decoding starts it at
// bid.DefaultRules, for a bounty without rules.
type rulesValue struct {
	r   bid.Rules
	err error
}

func (v *rulesValue) UnmarshalJSON(b []byte) error {
	v.r, v.err = parseRules(b)
	return nil
}

// present reports whether a raw value was given and is not null.
func present(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}

// UnmarshalJSON implements json.Unmarshaler; see ParseBounty.
//
// The object is decoded by github.com/goccy/go-json, which reads values as
// encoding/json does, in a fraction of its time. What it refuses is decoded
// again by encoding/json, which has the last word on what is wrong: the
// errors are the ones encoding/json reports (go-json names the field of a
// type error by the key as written, not as declared).
func (b *Bounty) UnmarshalJSON(data []byte) error {
	w := wireBounty{Rules: rulesValue{r: bid.DefaultRules}}
	if gojson.Unmarshal(data, &w) == nil {
		return b.fromWire(&w)
	}
	w = wireBounty{Rules: rulesValue{r: bid.DefaultRules}}
	if err := json.Unmarshal(data, &w); err != nil {
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typ) && typ.Field != "":
			return &BountyError{Field: typ.Field, Reason: "is a JSON " + typ.Value + ", not a string"}
		case errors.As(err, &typ):
			return &BountyError{Reason: "not a JSON object: " + typ.Value}
		default:
			return &BountyError{Reason: "not JSON: " + err.Error()}
		}
	}
	return b.fromWire(&w)
}

// fromWire checks w and sets *b from it.
func (b *Bounty) fromWire(w *wireBounty) error {
	var out Bounty
	var err error

	id := w.ID
	if !id.given {
		id = w.GUID
	}
	if !id.given {
		return &BountyError{Field: "id", Reason: "missing (neither id nor guid given)"}
	}
	if id.err != nil {
		return fieldErr("id", id.err)
	}
	out.ID = id.id

	out.ArtifactType = FileArtifact
	if w.ArtifactType != "" {
		if out.ArtifactType, err = ParseArtifactType(w.ArtifactType); err != nil {
			return fieldErr("artifact_type", err)
		}
	}
	out.ArtifactURI = cmp.Or(w.ArtifactURI, w.ArtifactURL)
	if out.ArtifactURI == "" {
		return &BountyError{Field: "artifact_uri", Reason: "missing (neither artifact_uri nor artifact_url given)"}
	}

	// A sha256 that is not one is ignored, with a warning: the Python
	// libraries never check it, and PolySwarm's own examples send
	// placeholders ("optional-for-file").
	var warn string
	switch {
	case w.SHA256.invalid != "":
		out.Warnings = append(out.Warnings, fmt.Sprintf("sha256 is the JSON value %.80s, not a string: ignored, the content's own sha256 is used", w.SHA256.invalid))
	case w.SHA256.s != "":
		if out.SHA256, warn = checkSHA256("sha256", w.SHA256.s); warn != "" {
			out.Warnings = append(out.Warnings, warn)
		}
	}
	out.MIMEType = w.MIMEType
	if present(w.Metadata) {
		if w.Metadata[0] != '{' {
			return &BountyError{Field: "metadata", Reason: "is not an object"}
		}
		if out.SHA256 == "" || out.MIMEType == "" {
			var meta struct {
				SHA256   string `json:"sha256"`
				MIMEType string `json:"mimetype"`
			}
			_ = json.Unmarshal(w.Metadata, &meta) // best effort: odd types under metadata are not ours to refuse
			if out.SHA256 == "" && meta.SHA256 != "" {
				if out.SHA256, warn = checkSHA256("metadata.sha256", meta.SHA256); warn != "" {
					out.Warnings = append(out.Warnings, warn)
				}
			}
			out.MIMEType = cmp.Or(out.MIMEType, meta.MIMEType)
		}
		out.Metadata = w.Metadata
	}

	out.Expiration = w.Expiration.t // unreadable: zero, a default window
	if w.TaskedAt.err != nil {
		return fieldErr("tasked_at", w.TaskedAt.err)
	}
	out.TaskedAt = w.TaskedAt.t
	if w.Duration.err != nil {
		return fieldErr("duration", w.Duration.err)
	}
	out.Duration = w.Duration.d

	if w.ResponseURL != "" {
		u, err := url.Parse(w.ResponseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return &BountyError{Field: "response_url", Reason: fmt.Sprintf("%q is not an http(s) URL", w.ResponseURL)}
		}
		out.ResponseURL = w.ResponseURL
	}

	if w.Rules.err != nil {
		return fieldErr("rules", w.Rules.err)
	}
	out.Rules = w.Rules.r
	if out.Phase, err = parsePhase(w.Phase); err != nil {
		return fieldErr("phase", err)
	}
	*b = out
	return nil
}

// parseRules reads the rules object; missing, null, {} and [] are the
// defaults, and so is each amount left out. The object is split by
// go-json, as the bounty, and the amounts read as bid.Rules.UnmarshalJSON
// reads them; anything else is left to bid.Rules.UnmarshalJSON, which
// says what is wrong.
func parseRules(raw []byte) (bid.Rules, error) {
	var r bid.Rules
	if present(raw) && !emptyArray(raw) {
		var amounts struct {
			Min json.RawMessage `json:"min_allowed_bid"`
			Max json.RawMessage `json:"max_allowed_bid"`
		}
		var err error
		if raw[0] == '{' && gojson.Unmarshal(raw, &amounts) == nil {
			r, err = bid.RulesFromJSON(amounts.Min, amounts.Max)
		} else {
			err = r.UnmarshalJSON(raw)
		}
		if err != nil {
			return bid.Rules{}, err
		}
	}
	r = r.OrDefault()
	return r, r.Validate()
}

// emptyArray reports whether raw is an empty JSON array, which some
// producers write for an empty object.
func emptyArray(raw []byte) bool {
	var list []any
	return raw[0] == '[' && json.Unmarshal(raw, &list) == nil && len(list) == 0
}

// unquote returns the text of the JSON string raw. A string with no escape,
// control character or invalid UTF-8 is its own text between the quotes;
// the others are left to encoding/json.
func unquote(raw []byte) (string, error) {
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' {
		if s := raw[1 : n-1]; plainString(s) {
			return string(s), nil
		}
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

func plainString(b []byte) bool {
	for _, c := range b {
		if c < ' ' || c == '"' || c == '\\' {
			return false
		}
	}
	return utf8.Valid(b)
}

// timestamp layouts seen on the wire; a missing zone means UTC.
var timestampLayouts = []string{
	"2006-01-02T15:04:05.999999999",
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z0700",
}

// parseTimestamp reads a timestamp given as a string in one of
// timestampLayouts or as a number of seconds since the epoch. raw is a
// valid JSON value, not null.
func parseTimestamp(raw []byte) (time.Time, error) {
	if raw[0] == '"' {
		if s, err := unquote(raw); err == nil {
			s = strings.TrimSpace(s)
			for _, layout := range timestampLayouts {
				if t, err := time.Parse(layout, s); err == nil {
					return inRange(t.UTC(), raw)
				}
			}
		}
	} else if v, err := strconv.ParseFloat(string(raw), 64); err == nil && math.Abs(v) <= 1e11 {
		// Of the other JSON values only numbers parse, as encoding/json
		// reads them into a float64 (beyond float64, an error).
		sec, frac := math.Modf(v)
		return inRange(time.Unix(int64(sec), int64(frac*1e9)).UTC(), raw)
	}
	return time.Time{}, fmt.Errorf("%.64s is not a timestamp", raw)
}

// inRange returns t when its year is one RFC 3339 can write (1 to 9999),
// so that a parsed bounty marshals back to what parses again.
func inRange(t time.Time, raw []byte) (time.Time, error) {
	if y := t.Year(); y < 1 || y > 9999 {
		return time.Time{}, fmt.Errorf("%.64s is not a timestamp between the years 1 and 9999", raw)
	}
	return t, nil
}

// parseSeconds reads a non-negative number of seconds given as a JSON number
// or a string; decimal forms are read exactly, to the nanosecond.
func parseSeconds(raw []byte) (time.Duration, error) {
	s := string(raw)
	if raw[0] == '"' {
		var err error
		if s, err = unquote(raw); err != nil {
			return 0, err
		}
	}
	s = strings.TrimSpace(s)
	if !strings.ContainsAny(s, "eE") && !strings.HasPrefix(s, "+") {
		if d, err := time.ParseDuration(s + "s"); err == nil && d >= 0 {
			return d, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > 1e9 {
		return 0, fmt.Errorf("%.64q is not a number of seconds", s)
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
