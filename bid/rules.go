package bid

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// NCT is one Nectar token in NCT-wei, the unit of bids.
const NCT int64 = 1_000_000_000_000_000_000

// Rules bound the bid of an assertion, in NCT-wei, both ends included.
type Rules struct {
	Min int64 `json:"min_allowed_bid"`
	Max int64 `json:"max_allowed_bid"`
}

// DefaultRules are the usual PolySwarm rules (min 0.0625 NCT, max 1 NCT), used
// for bounties that carry none.
var DefaultRules = Rules{Min: NCT / 16, Max: NCT}

// ErrInvalidRules is matched (errors.Is) by every [*RulesError].
var ErrInvalidRules = errors.New("bid: invalid rules")

// RulesError reports rules that cannot be decoded or used.
type RulesError struct {
	// Rules holds the rules being validated (Validate), or the amounts decoded
	// so far (UnmarshalJSON).
	Rules Rules
	// Field is the JSON name of the offending amount, or "" when the pair or
	// the whole object is at fault.
	Field string
	// Input is the offending JSON text when decoding (at most 64 bytes).
	Input string
	// Reason says what is wrong.
	Reason string
	// Err is the underlying error, if any (a JSON syntax or type error).
	Err error
}

func (e *RulesError) Error() string {
	var b strings.Builder
	b.WriteString(ErrInvalidRules.Error())
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		if e.Input != "" {
			b.WriteString(" ")
			b.WriteString(e.Input)
		}
		b.WriteString(": ")
	} else if e.Input == "" && e.Err == nil {
		fmt.Fprintf(&b, "[%d, %d]: ", e.Rules.Min, e.Rules.Max)
	}
	b.WriteString(e.Reason)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns ErrInvalidRules and Err.
func (e *RulesError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrInvalidRules}
	}
	return []error{ErrInvalidRules, e.Err}
}

// OrDefault fills in missing rules (a zero amount means missing):
//   - no rules at all: DefaultRules;
//   - only Max: Min is DefaultRules.Min, or Max when Max is below it;
//   - only Min: Max is DefaultRules.Max, or Min when Min is above it;
//   - both: r unchanged (even if invalid: see Validate).
func (r Rules) OrDefault() Rules {
	switch {
	case r.Min == 0 && r.Max == 0:
		return DefaultRules
	case r.Min == 0:
		r.Min = min(DefaultRules.Min, r.Max)
	case r.Max == 0:
		r.Max = max(DefaultRules.Max, r.Min)
	}
	return r
}

// Validate returns nil if 0 < Min <= Max, else a [*RulesError].
func (r Rules) Validate() error {
	switch {
	case r.Min <= 0:
		return &RulesError{Rules: r, Reason: "min_allowed_bid must be positive"}
	case r.Max < r.Min:
		return &RulesError{Rules: r, Reason: "max_allowed_bid is below min_allowed_bid"}
	}
	return nil
}

// Clamp returns w limited to [Min, Max]. For invalid rules with Max < Min it
// returns Min.
func (r Rules) Clamp(w int64) int64 { return max(min(w, r.Max), r.Min) }

// Contains reports whether Min <= w <= Max.
func (r Rules) Contains(w int64) bool { return r.Min <= w && w <= r.Max }

// MarshalJSON writes r as an object of two JSON integers.
func (r Rules) MarshalJSON() ([]byte, error) {
	b := []byte(`{"min_allowed_bid":`)
	b = strconv.AppendInt(b, r.Min, 10)
	b = append(b, `,"max_allowed_bid":`...)
	b = strconv.AppendInt(b, r.Max, 10)
	return append(b, '}'), nil
}

// UnmarshalJSON decodes rules leniently, as the package documentation
// describes: each amount may be a JSON integer of any size, an integral float,
// a numeric string, or null or absent (0). A max_allowed_bid beyond int64
// saturates at math.MaxInt64; a min_allowed_bid beyond int64, a negative or a
// non-integral amount is a [*RulesError]. Unknown fields are ignored; a JSON
// null leaves r unchanged. UnmarshalJSON does not call Validate.
func (r *Rules) UnmarshalJSON(data []byte) error {
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return nil
	}
	var raw struct {
		Min json.RawMessage `json:"min_allowed_bid"`
		Max json.RawMessage `json:"max_allowed_bid"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return &RulesError{Input: snippet(data), Reason: "not a JSON object", Err: err}
	}
	got, err := RulesFromJSON(raw.Min, raw.Max)
	if err != nil {
		return err
	}
	*r = got
	return nil
}

// RulesFromJSON decodes rules from the JSON texts of min_allowed_bid and
// max_allowed_bid (nil or "null" for a missing one), as UnmarshalJSON does;
// a decoder that has already split the object calls it to avoid a second
// pass over the JSON. Errors are *RulesError.
func RulesFromJSON(minJSON, maxJSON json.RawMessage) (Rules, error) {
	var got Rules
	var saturated bool
	var err error
	if got.Min, saturated, err = parseAmount(minJSON); err == nil && saturated {
		err = errors.New("exceeds the int64 range: no int64 bid can meet it")
	}
	if err != nil {
		return Rules{}, &RulesError{Rules: got, Field: "min_allowed_bid", Input: snippet(minJSON), Reason: err.Error()}
	}
	if got.Max, _, err = parseAmount(maxJSON); err != nil {
		return Rules{}, &RulesError{Rules: got, Field: "max_allowed_bid", Input: snippet(maxJSON), Reason: err.Error()}
	}
	return got, nil
}

func snippet(b []byte) string {
	const limit = 64
	if len(b) > limit {
		return string(b[:limit]) + "..."
	}
	return string(b)
}

// parseAmount decodes one JSON value as a non-negative integer amount.
// saturated reports a value beyond int64, returned as math.MaxInt64.
func parseAmount(raw json.RawMessage) (v int64, saturated bool, err error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return 0, false, nil
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, false, err
		}
		return parseDecimal(strings.TrimSpace(s))
	case raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9':
		return parseDecimal(string(raw))
	}
	return 0, false, errors.New("not a number")
}

// parseDecimal parses [+-]digits[.digits][(e|E)[+-]digits] exactly, without
// building big numbers: the value is kept as significant digits and a power of
// ten, so 1e999999999 costs no more than 1e9.
func parseDecimal(s string) (v int64, saturated bool, err error) {
	errSyntax := errors.New("not a decimal number")
	i := 0
	negative := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		negative = s[i] == '-'
		i++
	}
	// Mantissa: collect significant digits; exp10 counts the decimal point.
	var digits []byte
	var exp10 int64
	seenDigit, seenPoint := false, false
mantissa:
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			seenDigit = true
			if seenPoint {
				exp10--
			}
			if c == '0' && len(digits) == 0 {
				continue // leading zero
			}
			digits = append(digits, c)
		case c == '.' && !seenPoint:
			seenPoint = true
		default:
			break mantissa
		}
	}
	if !seenDigit {
		return 0, false, errSyntax
	}
	if i < len(s) {
		if s[i] != 'e' && s[i] != 'E' {
			return 0, false, errSyntax
		}
		i++
		expNegative := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			expNegative = s[i] == '-'
			i++
		}
		if i == len(s) {
			return 0, false, errSyntax
		}
		const expCap = 1 << 40 // far beyond any meaningful exponent; avoids overflow
		var e int64
		for ; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return 0, false, errSyntax
			}
			e = min(e*10+int64(s[i]-'0'), expCap)
		}
		if expNegative {
			e = -e
		}
		exp10 += e
	}
	// Trailing zeros of the significant digits move into the exponent.
	for len(digits) > 0 && digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
		exp10++
	}
	if len(digits) == 0 {
		return 0, false, nil // any form of zero, -0 included
	}
	if negative {
		return 0, false, errors.New("negative")
	}
	if exp10 < 0 {
		return 0, false, errors.New("not an integer")
	}
	if int64(len(digits))+exp10 > 19 { // >= 10^19 > MaxInt64
		return math.MaxInt64, true, nil
	}
	var u uint64
	for _, c := range digits { // at most 19 digits: fits in uint64
		u = u*10 + uint64(c-'0')
	}
	for range exp10 {
		hi, lo := bits.Mul64(u, 10)
		if hi != 0 {
			return math.MaxInt64, true, nil
		}
		u = lo
	}
	if u > math.MaxInt64 {
		return math.MaxInt64, true, nil
	}
	return int64(u), false, nil
}
