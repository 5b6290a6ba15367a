package protocol

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/polyswarm/psengine/bid"
)

// Verdict is an engine's opinion of an artifact.
type Verdict string

const (
	Malicious  Verdict = "malicious"
	Benign     Verdict = "benign"
	Suspicious Verdict = "suspicious"
	Unknown    Verdict = "unknown"
)

// Valid reports whether v is one of the four verdicts.
func (v Verdict) Valid() bool {
	switch v {
	case Malicious, Benign, Suspicious, Unknown:
		return true
	}
	return false
}

// Bids reports whether an assertion with this verdict carries a bid:
// malicious and benign do; suspicious and unknown bid 0.
func (v Verdict) Bids() bool { return v == Malicious || v == Benign }

// Analysis is what a scanner says about an artifact, and, once the engine
// has bid, stamped and validated it, the answer to the bounty (docs/PROTOCOL.md §3).
//
// A scanner sets Verdict, optionally Metadata and one of Confidence, Score
// and Likelihood: how sure it is, on whichever scale it thinks in. Bid is
// normally left 0 for the bid stage to fill from that and the bounty's rules
// (psengine.LinearBid, by default, uses the first of Confidence, Score and
// Likelihood that is set); a scanner that sets Bid gets it clamped into the
// rules.
//
// Only Confidence goes on the wire (as metadata.confidence): PolySwarm's
// answer defines no field for a score or a likelihood word, so Score and
// Likelihood only steer the bid.
type Analysis struct {
	Verdict    Verdict
	Confidence float64        // 0.0-1.0; 0 means not specified
	Score      float64        // 0-100; 0 means not specified; used when Confidence is 0
	Likelihood bid.Likelihood // ICD 203 word; NotSpecified (0) by default; used when Confidence and Score are 0
	Bid        int64          // NCT-wei; 0 for suspicious and unknown
	Metadata   Metadata
}

// Metadata is the answer's metadata object. Extra holds keys PolySwarm does
// not define; they are written beside the known ones (a known key wins).
type Metadata struct {
	MalwareFamily string         `json:"malware_family,omitempty"`
	Product       string         `json:"product,omitempty"`
	Heuristic     bool           `json:"heuristic,omitempty"`
	Comments      []string       `json:"comments,omitempty"`
	Domains       []string       `json:"domains,omitempty"`
	IPAddresses   []string       `json:"ip_addresses,omitempty"`
	Error         string         `json:"error,omitempty"`
	Scanner       ScannerInfo    `json:"scanner,omitzero"`
	Extra         map[string]any `json:"-"`
}

// ScannerInfo describes the engine that answered.
type ScannerInfo struct {
	Version           string      `json:"version,omitempty"`        // of the engine wrapper
	VendorVersion     string      `json:"vendor_version,omitempty"` // of the scanning engine
	SignaturesVersion string      `json:"signatures_version,omitempty"`
	Environment       Environment `json:"environment,omitzero"`
}

// Environment is where the engine runs: lowercase OS (linux, windows,
// darwin) and architecture (x86_64, aarch64...).
type Environment struct {
	OperatingSystem string `json:"operating_system,omitempty"`
	Architecture    string `json:"architecture,omitempty"`
}

// knownMetadataKeys are the keys Metadata's fields own on the wire.
var knownMetadataKeys = map[string]bool{
	"malware_family": true, "product": true, "heuristic": true, "comments": true,
	"domains": true, "ip_addresses": true, "error": true, "scanner": true, "confidence": true,
}

type metadataFields Metadata // no methods: plain struct encoding

// MarshalJSON writes the known fields and the Extra keys in one object.
func (m Metadata) MarshalJSON() ([]byte, error) { return m.marshal(0) }

func (m Metadata) marshal(confidence float64) ([]byte, error) {
	known, err := json.Marshal(metadataFields(m))
	if err != nil {
		return nil, err
	}
	if len(m.Extra) == 0 && confidence == 0 {
		return known, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(known, &obj); err != nil {
		return nil, err
	}
	for k, v := range m.Extra {
		if knownMetadataKeys[k] {
			continue
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("metadata key %q: %w", k, err)
		}
		obj[k] = raw
	}
	if confidence != 0 {
		obj["confidence"], _ = json.Marshal(confidence)
	}
	return json.Marshal(obj) // map keys are written sorted: stable output
}

// UnmarshalJSON reads the known fields and keeps every other key in Extra.
func (m *Metadata) UnmarshalJSON(data []byte) error {
	var f metadataFields
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	var obj map[string]any
	if err := json.Unmarshal(data, &obj); err != nil {
		return err
	}
	f.Extra = nil
	for k, v := range obj {
		if knownMetadataKeys[k] {
			continue
		}
		if f.Extra == nil {
			f.Extra = make(map[string]any)
		}
		f.Extra[k] = v
	}
	*m = Metadata(f)
	return nil
}

// Merge returns m with what it leaves empty filled from base (m wins on
// conflicts, Extra keys included); neither input is modified. The engine
// stamps its head (Describer, WithMetadata) on every answer so.
func (m Metadata) Merge(base Metadata) Metadata {
	out := m
	out.MalwareFamily = cmp.Or(m.MalwareFamily, base.MalwareFamily)
	out.Product = cmp.Or(m.Product, base.Product)
	out.Heuristic = m.Heuristic || base.Heuristic
	s, b := &out.Scanner, base.Scanner
	s.Version = cmp.Or(s.Version, b.Version)
	s.VendorVersion = cmp.Or(s.VendorVersion, b.VendorVersion)
	s.SignaturesVersion = cmp.Or(s.SignaturesVersion, b.SignaturesVersion)
	s.Environment.OperatingSystem = cmp.Or(s.Environment.OperatingSystem, b.Environment.OperatingSystem)
	s.Environment.Architecture = cmp.Or(s.Environment.Architecture, b.Environment.Architecture)
	if len(base.Extra) > 0 {
		out.Extra = maps.Clone(base.Extra)
		maps.Copy(out.Extra, m.Extra)
	}
	return out
}

// Answer is the wire form of an analysis, the protocol's document, derived
// from it here and nowhere else: an assertion (verdict, bid, metadata) or,
// for a bounty in the arbitration phase, a vote (no bid key). The
// confidence, when set, is written as metadata.confidence; Score and
// Likelihood, which only steer the bid, are not written.
type Answer struct {
	Analysis
	Vote bool

	// encoded is the answer's JSON when the engine made it already (an
	// answer is encoded once per bounty: validated by its size, then
	// delivered as it is).
	encoded []byte
}

// NewAnswer returns the answer to b carrying a: a vote when b is in the
// arbitration phase.
func NewAnswer(b Bounty, a Analysis) Answer { return Answer{Analysis: a, Vote: b.IsVote()} }

// MarshalJSON writes the answer as PolySwarm expects it: the bid as a JSON
// integer, no bid key in a vote, and metadata.malware_family always
// present ("" when there is none), as polyswarm-artifact's verdict schema
// requires it. An answer the engine hands a Deliverer was encoded once
// already, and MarshalJSON returns that encoding: a Deliverer that wants
// to send something else builds its own with NewAnswer.
func (a Answer) MarshalJSON() ([]byte, error) {
	if a.encoded != nil {
		return a.encoded, nil
	}
	return a.encode()
}

// encode writes the answer (see MarshalJSON).
func (a Answer) encode() ([]byte, error) {
	meta, err := a.Metadata.marshal(a.Confidence)
	if err != nil {
		return nil, err
	}
	if a.Metadata.MalwareFamily == "" {
		meta = withEmptyFamily(meta)
	}
	var buf bytes.Buffer
	buf.WriteString(`{"verdict":`)
	v, _ := json.Marshal(a.Verdict)
	buf.Write(v)
	if !a.Vote {
		fmt.Fprintf(&buf, `,"bid":%d`, a.Bid)
	}
	buf.WriteString(`,"metadata":`)
	buf.Write(meta)
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// withEmptyFamily adds "malware_family":"" to a metadata object that has
// no such key, as its first key (where the known fields put it).
func withEmptyFamily(obj []byte) []byte {
	const key = `"malware_family":""`
	out := make([]byte, 0, len(obj)+len(key)+1)
	out = append(out, '{')
	out = append(out, key...)
	if rest := obj[1:]; len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, obj[1:]...)
}

// UnmarshalJSON reads an answer; the confidence is accepted top level or
// under metadata, and an answer without a bid key is a vote.
func (a *Answer) UnmarshalJSON(data []byte) error {
	var w struct {
		Verdict    string          `json:"verdict"`
		Bid        json.RawMessage `json:"bid"`
		Confidence *float64        `json:"confidence"`
		Metadata   json.RawMessage `json:"metadata"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	var out Answer
	out.Verdict = Verdict(strings.ToLower(w.Verdict))
	if present(w.Bid) {
		var n json.Number
		if err := json.Unmarshal(w.Bid, &n); err != nil {
			return fmt.Errorf("bid: %w", err)
		}
		bidValue, err := n.Int64()
		if err != nil {
			return fmt.Errorf("bid %s is not a JSON integer", n)
		}
		out.Bid = bidValue
	} else {
		out.Vote = true
	}
	if present(w.Metadata) {
		if err := json.Unmarshal(w.Metadata, &out.Metadata); err != nil {
			return fmt.Errorf("metadata: %w", err)
		}
		var mc struct {
			Confidence *float64 `json:"confidence"`
		}
		_ = json.Unmarshal(w.Metadata, &mc)
		if mc.Confidence != nil {
			out.Confidence = *mc.Confidence
		}
	}
	if w.Confidence != nil && out.Confidence == 0 {
		out.Confidence = *w.Confidence
	}
	*a = out
	return nil
}

// analysisJSON is an Analysis's own encoding: every field. It is what the
// engine stores and passes between processes (the process backend's
// children, the durable and distributed brokers' kept answers); the wire
// Answer is derived from it (see Answer).
type analysisJSON struct {
	Verdict    Verdict        `json:"verdict"`
	Confidence float64        `json:"confidence,omitempty"`
	Score      float64        `json:"score,omitempty"`
	Likelihood bid.Likelihood `json:"likelihood,omitempty"`
	Bid        int64          `json:"bid"`
	Metadata   Metadata       `json:"metadata"`
}

// MarshalJSON writes every field of a: verdict, confidence, score,
// likelihood, bid, metadata (with its extra keys). This is the analysis's
// own encoding, not the protocol's answer (see Answer, NewAnswer).
func (a Analysis) MarshalJSON() ([]byte, error) {
	return json.Marshal(analysisJSON(a))
}

// UnmarshalJSON reads an analysis's own encoding (see MarshalJSON). It
// reads an answer too (the confidence under metadata; a vote has no bid).
func (a *Analysis) UnmarshalJSON(data []byte) error {
	var w analysisJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	out := Analysis(w)
	if out.Confidence == 0 && bytes.Contains(data, []byte(`"confidence"`)) {
		var mc struct {
			Metadata struct {
				Confidence float64 `json:"confidence"`
			} `json:"metadata"`
		}
		_ = json.Unmarshal(data, &mc)
		out.Confidence = mc.Metadata.Confidence
	}
	*a = out
	return nil
}

// Comments of the special results (docs/PROTOCOL.md §3).
const (
	CommentSkipped             = "SKIPPED"
	CommentEncrypted           = "SKIPPED:ENCRYPTED"
	CommentUnsupported         = "SKIPPED:TYPE-UNSUPPORTED"
	CommentCannotFetch         = "SKIPPED:CANNOT-FETCH"
	CommentUnsafeDecompression = "SKIPPED:DECOMPRESSION-UNSAFE"
)

func special(v Verdict, comment string, err error) Analysis {
	a := Analysis{Verdict: v, Metadata: Metadata{Comments: []string{comment}}}
	if err != nil {
		a.Metadata.Error = err.Error()
	}
	return a
}

// Skipped is the answer for an artifact the engine chose not to scan, or
// could not (err, when not nil, goes to metadata.error).
func Skipped(err error) Analysis { return special(Unknown, CommentSkipped, err) }

// Encrypted is the answer for an encrypted artifact.
func Encrypted() Analysis { return special(Unknown, CommentEncrypted, nil) }

// Unsupported is the answer for an artifact of a kind the engine does not handle.
func Unsupported() Analysis { return special(Unknown, CommentUnsupported, nil) }

// CannotFetch is the answer for an artifact that could not be read; err
// (the reason) goes to metadata.error.
func CannotFetch(err error) Analysis { return special(Unknown, CommentCannotFetch, err) }

// UnsafeDecompression is the answer for an archive that would not be safe
// to unpack (a decompression bomb).
func UnsafeDecompression() Analysis { return special(Suspicious, CommentUnsafeDecompression, nil) }

// ValidationError says why PolySwarm would reject an answer. It wraps
// ErrInvalidAnalysis.
type ValidationError struct {
	// Field is the wire path, such as "bid" or "metadata.product", or the Go
	// field name (Score, Likelihood) for what is not on the wire.
	Field  string
	Reason string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid analysis: %s: %s", e.Field, e.Reason)
}

func (e *ValidationError) Unwrap() error { return ErrInvalidAnalysis }

// Validate reports whether a is an answer PolySwarm would accept for b:
// a known verdict; a confidence within [0, 1]; a score within [0, 100] and a
// likelihood that is NotSpecified or one of the bid package's constants (the
// engine's own contract: neither goes on the wire); in an assertion a bid
// inside b's rules for malicious and benign, and 0 for suspicious and
// unknown; a product made of lowercase words joined by '-'; a lowercase
// operating system; valid UTF-8 text; an answer of MaxAnswerSize bytes of
// JSON at most. Errors are *ValidationError.
func Validate(b Bounty, a Analysis) error {
	if err := validateFields(b, a); err != nil {
		return err
	}
	// The size: exactly when the metadata may be large, as its text
	// bounds it from below (escaping only adds).
	m := a.Metadata
	text := len(m.MalwareFamily) + len(m.Error) + len(m.Product) + len(m.Scanner.Version) +
		len(m.Scanner.VendorVersion) + len(m.Scanner.SignaturesVersion)
	for _, list := range [][]string{m.Comments, m.Domains, m.IPAddresses} {
		for _, s := range list {
			text += len(s) + 3
		}
	}
	if len(m.Extra) > 0 || text > MaxAnswerSize/8 {
		_, err := encodeAnswer(b, a)
		return err
	}
	return nil
}

// validateFields is Validate but for the answer's size.
func validateFields(b Bounty, a Analysis) error {
	if !a.Verdict.Valid() {
		return &ValidationError{"verdict", fmt.Sprintf("%q is not malicious, benign, suspicious or unknown", a.Verdict)}
	}
	if math.IsNaN(a.Confidence) || a.Confidence < 0 || a.Confidence > 1 {
		return &ValidationError{"metadata.confidence", fmt.Sprintf("%v is outside [0, 1]", a.Confidence)}
	}
	if math.IsNaN(a.Score) || a.Score < 0 || a.Score > 100 {
		return &ValidationError{"Score", fmt.Sprintf("%v is outside [0, 100]", a.Score)}
	}
	if _, known := a.Likelihood.Score(); !known && a.Likelihood != bid.NotSpecified {
		return &ValidationError{"Likelihood", fmt.Sprintf("%v is not an ICD 203 likelihood", a.Likelihood)}
	}
	if !b.IsVote() {
		rules := b.Rules.OrDefault()
		switch {
		case a.Verdict.Bids() && !rules.Contains(a.Bid):
			return &ValidationError{"bid", fmt.Sprintf("%d is outside the rules [%d, %d] for a %s assertion", a.Bid, rules.Min, rules.Max, a.Verdict)}
		case !a.Verdict.Bids() && a.Bid != 0:
			return &ValidationError{"bid", fmt.Sprintf("%d must be 0 for a %s assertion", a.Bid, a.Verdict)}
		}
	}
	m := a.Metadata
	if m.Product != "" && !isProductName(m.Product) {
		return &ValidationError{"metadata.product", fmt.Sprintf("%q is not lowercase words joined by '-'", m.Product)}
	}
	if os := m.Scanner.Environment.OperatingSystem; os != strings.ToLower(os) {
		return &ValidationError{"metadata.scanner.environment.operating_system", fmt.Sprintf("%q is not lowercase", os)}
	}
	for _, f := range [...]struct{ name, s string }{
		{"metadata.malware_family", m.MalwareFamily},
		{"metadata.error", m.Error},
		{"metadata.scanner.version", m.Scanner.Version},
		{"metadata.scanner.vendor_version", m.Scanner.VendorVersion},
		{"metadata.scanner.signatures_version", m.Scanner.SignaturesVersion},
	} {
		if !utf8.ValidString(f.s) {
			return &ValidationError{f.name, "is not valid UTF-8"}
		}
	}
	for _, list := range [...]struct {
		name string
		s    []string
	}{{"metadata.comments", m.Comments}, {"metadata.domains", m.Domains}, {"metadata.ip_addresses", m.IPAddresses}} {
		for i, s := range list.s {
			if !utf8.ValidString(s) {
				return &ValidationError{fmt.Sprintf("%s[%d]", list.name, i), "is not valid UTF-8"}
			}
		}
	}
	return nil
}

// EncodeAnswer validates a as the answer to b (see Validate) and returns
// that answer with its JSON made once: its MarshalJSON returns the
// encoding as it is. Errors are *ValidationError.
func EncodeAnswer(b Bounty, a Analysis) (Answer, error) {
	if err := validateFields(b, a); err != nil {
		return NewAnswer(b, a), err
	}
	return encodeAnswer(b, a)
}

// encodeAnswer is the answer to b carrying a, and its JSON, which must
// fit in MaxAnswerSize (a *ValidationError otherwise).
func encodeAnswer(b Bounty, a Analysis) (Answer, error) {
	ans := NewAnswer(b, a)
	data, err := ans.encode()
	if err != nil {
		return ans, &ValidationError{"metadata", err.Error()}
	}
	if len(data) > MaxAnswerSize {
		return ans, &ValidationError{"metadata", fmt.Sprintf("the answer is %d bytes of JSON, over the %d-byte limit", len(data), MaxAnswerSize)}
	}
	ans.encoded = data
	return ans, nil
}

// MaxAnswerSize is the largest answer the engine delivers, in bytes of
// JSON: an analysis whose answer would be larger is refused by Validate,
// and the engine answers unknown instead, saying why in metadata.error.
// Large reports belong elsewhere (a link in the metadata).
const MaxAnswerSize = 64 << 10

func isProductName(s string) bool {
	prev := byte('-') // no leading, trailing or doubled hyphen
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '-':
			if prev == '-' {
				return false
			}
		case !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_'):
			return false
		}
		prev = c
	}
	return prev != '-'
}

// ProductName turns a display name ("ClamAV Engine") into the wire form
// of metadata.product ("clamav-engine").
func ProductName(s string) string {
	words := strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_')
	})
	return strings.Join(words, "-")
}

// present reports whether a raw value was given and is not null.
func present(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}
