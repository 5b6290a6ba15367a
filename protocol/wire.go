package protocol

import (
	"bytes"
	"cmp"
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

// The bounty's decoding, liberal in what it accepts (see ParseBounty):
// legacy field names, ids of any size, every timestamp form seen,
// placeholder sha256s ignored with a warning. It decodes with
// github.com/goccy/go-json and falls back to encoding/json for what that
// refuses, so that the errors are encoding/json's.

// decodeBounty reads a bounty; the error is a *BountyError.
func decodeBounty(data []byte) (Bounty, error) {
	w := wireBounty{Rules: rulesValue{r: bid.DefaultRules}}
	if gojson.Unmarshal(data, &w) == nil {
		return w.bounty()
	}
	w = wireBounty{Rules: rulesValue{r: bid.DefaultRules}}
	if err := json.Unmarshal(data, &w); err != nil {
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typ) && typ.Field != "":
			return Bounty{}, &BountyError{Field: typ.Field, Reason: "is a JSON " + typ.Value + ", not a string"}
		case errors.As(err, &typ):
			return Bounty{}, &BountyError{Reason: "not a JSON object: " + typ.Value}
		default:
			return Bounty{}, &BountyError{Reason: "not JSON: " + err.Error()}
		}
	}
	return w.bounty()
}

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

// parsePhase accepts assertion and arbitration in any casing, with or
// without the "_window" suffix of older payloads; "" is assertion.
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

// parseID reads an id: a JSON integer (any size, kept as digits, number
// true) or a string that is not blank (kept as a string, even if it holds
// digits).
func parseID(b []byte) (id string, number bool, err error) {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		s, err := unquote(b)
		if err != nil {
			return "", false, err
		}
		if strings.TrimSpace(s) == "" {
			return "", false, errors.New("is a blank string")
		}
		return s, false, nil
	}
	if !isDigits(string(b)) {
		return "", false, fmt.Errorf("%q is not a non-negative integer", b)
	}
	return string(b), true, nil
}

// isDigits reports whether s is a non-empty string of ASCII digits.
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

// bounty checks w and returns its bounty.
func (w *wireBounty) bounty() (Bounty, error) {
	var out Bounty
	var err error

	id := w.ID
	if !id.given {
		id = w.GUID
	}
	if !id.given {
		return Bounty{}, &BountyError{Field: "id", Reason: "missing (neither id nor guid given)"}
	}
	if id.err != nil {
		return Bounty{}, fieldErr("id", id.err)
	}
	out.ID = BountyID{raw: id.id, number: id.number}

	out.ArtifactType = FileArtifact
	if w.ArtifactType != "" {
		if out.ArtifactType, err = ParseArtifactType(w.ArtifactType); err != nil {
			return Bounty{}, fieldErr("artifact_type", err)
		}
	}
	out.ArtifactURI = cmp.Or(w.ArtifactURI, w.ArtifactURL)
	if out.ArtifactURI == "" {
		return Bounty{}, &BountyError{Field: "artifact_uri", Reason: "missing (neither artifact_uri nor artifact_url given)"}
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
			return Bounty{}, &BountyError{Field: "metadata", Reason: "is not an object"}
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
		return Bounty{}, fieldErr("tasked_at", w.TaskedAt.err)
	}
	out.TaskedAt = w.TaskedAt.t
	if w.Duration.err != nil {
		return Bounty{}, fieldErr("duration", w.Duration.err)
	}
	out.Duration = w.Duration.d

	if w.ResponseURL != "" {
		u, err := url.Parse(w.ResponseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Bounty{}, &BountyError{Field: "response_url", Reason: fmt.Sprintf("%q is not an http(s) URL", w.ResponseURL)}
		}
		out.ResponseURL = w.ResponseURL
	}

	if w.Rules.err != nil {
		return Bounty{}, fieldErr("rules", w.Rules.err)
	}
	out.Rules = w.Rules.r
	if out.Phase, err = parsePhase(w.Phase); err != nil {
		return Bounty{}, fieldErr("phase", err)
	}
	return out, nil
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
	given  bool
	id     string
	number bool
	err    error
}

func (v *idValue) UnmarshalJSON(b []byte) error {
	*v = idValue{given: present(b)}
	if v.given {
		v.id, v.number, v.err = parseID(b)
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
