package protocol

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

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
	raw, number, err := parseID(b)
	if err == nil {
		*id = BountyID{raw: raw, number: number}
	}
	return err
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

// UnmarshalJSON implements json.Unmarshaler; see ParseBounty.
func (b *Bounty) UnmarshalJSON(data []byte) error {
	out, err := decodeBounty(data)
	if err == nil {
		*b = out
	}
	return err
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
