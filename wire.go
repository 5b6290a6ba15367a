package psengine

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeWire fills w from data as json.Unmarshal(data, w) would, in one
// pass over the bytes instead of encoding/json's two (it validates the
// whole input, then decodes it). Bounties arrive by the thousand at the
// webhook; the JSON decode was most of the cost of taking one in.
//
// It keeps encoding/json's behaviour, which the differential fuzz target
// FuzzDecodeWire holds it to: keys matched exactly, else case-insensitively
// (Unicode simple folding); the last of repeated keys wins (and a repeated
// "rules" object merges into the first); null leaves a *string nil and is
// kept as "null" in a json.RawMessage; strings unescaped with invalid UTF-8
// and lone surrogates turned into U+FFFD; unknown keys skipped; a syntax
// error anywhere (*json.SyntaxError) wins over a wrong JSON type, which is
// reported (*json.UnmarshalTypeError with the field's name) once the whole
// input is known to be valid. RawMessage values alias data.
func decodeWire(data []byte, w *wireBounty) error {
	d := wireDecoder{data: data}
	d.skipSpace()
	if d.pos >= len(d.data) {
		return d.syntaxErr("unexpected end of JSON input")
	}
	if d.data[d.pos] == '{' {
		d.object(w)
	} else {
		start := d.pos
		if d.value(0) && string(d.data[start:d.pos]) != "null" {
			d.typeErr(kindOf(d.data[start]), "")
		}
	}
	if d.syntax == nil {
		d.skipSpace()
		if d.pos < len(d.data) {
			d.fail("invalid character %s after top-level value", quoteChar(d.data[d.pos]))
		}
	}
	if d.syntax != nil {
		return d.syntax
	}
	if d.typ != nil {
		return d.typ
	}
	return nil
}

// wireField names the fields of wireBounty (and wireRules).
type wireField int

const (
	fieldUnknown wireField = iota
	fieldID
	fieldGUID
	fieldArtifactType
	fieldArtifactURI
	fieldArtifactURL
	fieldSHA256
	fieldMIMEType
	fieldExpiration
	fieldResponseURL
	fieldRules
	fieldPhase
	fieldMetadata
	fieldDuration
	fieldTaskedAt
	fieldMin
	fieldMax
)

var bountyFields = []struct {
	name string
	f    wireField
}{
	{"id", fieldID}, {"guid", fieldGUID}, {"artifact_type", fieldArtifactType},
	{"artifact_uri", fieldArtifactURI}, {"artifact_url", fieldArtifactURL},
	{"sha256", fieldSHA256}, {"mimetype", fieldMIMEType}, {"expiration", fieldExpiration},
	{"response_url", fieldResponseURL}, {"rules", fieldRules}, {"phase", fieldPhase},
	{"metadata", fieldMetadata}, {"duration", fieldDuration}, {"tasked_at", fieldTaskedAt},
}

var rulesFields = []struct {
	name string
	f    wireField
}{{"min_allowed_bid", fieldMin}, {"max_allowed_bid", fieldMax}}

// Folded names, for keys that match no field exactly.
var (
	bountyFolded = foldedNames(bountyFields)
	rulesFolded  = foldedNames(rulesFields)
)

func foldedNames(fields []struct {
	name string
	f    wireField
}) map[string]wireField {
	m := make(map[string]wireField, len(fields))
	for _, f := range fields {
		m[string(foldName(nil, []byte(f.name)))] = f.f
	}
	return m
}

func lookupField(key []byte, fields []struct {
	name string
	f    wireField
}, folded map[string]wireField) wireField {
	for _, f := range fields {
		if string(key) == f.name {
			return f.f
		}
	}
	var buf [32]byte
	return folded[string(foldName(buf[:0], key))]
}

// foldName appends to out the form of name under which keys and field
// names compare case-insensitively: ASCII letters upper-cased, other runes
// replaced by the smallest rune of their simple-folding orbit.
func foldName(out, name []byte) []byte {
	for i := 0; i < len(name); {
		if c := name[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(name[i:])
		for {
			next := unicode.SimpleFold(r)
			if next <= r {
				r = next
				break
			}
			r = next
		}
		out = utf8.AppendRune(out, r)
		i += n
	}
	return out
}

// maxDepth is how deeply values may nest (encoding/json's limit).
const maxDepth = 10000

// wireSyntaxError is invalid JSON, at Offset.
type wireSyntaxError struct {
	msg    string
	Offset int64
}

func (e *wireSyntaxError) Error() string { return e.msg }

// wireTypeError is a field holding a JSON value of the wrong type: Value
// is the JSON kind found ("number", "array"...), Field the field's name
// ("" for the top level).
type wireTypeError struct {
	Value, Field string
}

func (e *wireTypeError) Error() string {
	if e.Field == "" {
		return "cannot decode a JSON " + e.Value + " as a bounty object"
	}
	return "field " + e.Field + " cannot be a JSON " + e.Value
}

type wireDecoder struct {
	data   []byte
	pos    int
	syntax *wireSyntaxError // the first syntax error: decoding stops
	typ    *wireTypeError   // the first wrong type: decoding goes on
	buf    []byte           // scratch for keys with escapes
}

func (d *wireDecoder) fail(format string, args ...any) {
	if d.syntax == nil {
		d.syntax = &wireSyntaxError{msg: fmt.Sprintf(format, args...), Offset: int64(d.pos)}
	}
}

func (d *wireDecoder) syntaxErr(msg string) error {
	d.fail("%s", msg)
	return d.syntax
}

func (d *wireDecoder) typeErr(kind, field string) {
	if d.typ == nil {
		d.typ = &wireTypeError{Value: kind, Field: field}
	}
}

// kindOf names the JSON kind of a value starting with c.
func kindOf(c byte) string {
	switch c {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

func quoteChar(c byte) string {
	if c == '\'' {
		return `'\''`
	}
	if c == '"' {
		return `'"'`
	}
	s := strconv.Quote(string(rune(c)))
	return "'" + s[1:len(s)-1] + "'"
}

func (d *wireDecoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte, or fails at the end.
func (d *wireDecoder) peek() (byte, bool) {
	d.skipSpace()
	if d.pos >= len(d.data) {
		d.fail("unexpected end of JSON input")
		return 0, false
	}
	return d.data[d.pos], true
}

// next consumes what follows a member or element: ',' (more is true) or
// the closing byte (more is false); anything else fails, saying it came
// after what.
func (d *wireDecoder) next(closing byte, what string) (more, ok bool) {
	c, ok := d.peek()
	if !ok {
		return false, false
	}
	switch c {
	case ',':
		d.pos++
		return true, true
	case closing:
		d.pos++
		return false, true
	}
	d.fail("invalid character %s after %s", quoteChar(c), what)
	return false, false
}

// expect consumes c (after white space) or fails.
func (d *wireDecoder) expect(c byte, what string) bool {
	got, ok := d.peek()
	if !ok {
		return false
	}
	if got != c {
		d.fail("invalid character %s %s", quoteChar(got), what)
		return false
	}
	d.pos++
	return true
}

// object decodes the bounty object at d.pos into w.
func (d *wireDecoder) object(w *wireBounty) {
	d.members(1, bountyFields, bountyFolded, func(f wireField, start int) bool {
		return d.bountyField(w, f, start)
	})
}

// members walks the members of the object at d.pos (its '{' not yet
// consumed), calling set for each with the field the key names (or
// fieldUnknown) and the position of its value; set consumes the value and
// reports whether decoding may go on.
func (d *wireDecoder) members(depth int, fields []struct {
	name string
	f    wireField
}, folded map[string]wireField, set func(f wireField, start int) bool) bool {
	if depth > maxDepth {
		d.fail("exceeded max depth")
		return false
	}
	d.pos++ // '{'
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return true
	}
	for {
		c, ok := d.peek()
		if !ok {
			return false
		}
		if c != '"' {
			d.fail("invalid character %s looking for beginning of object key string", quoteChar(c))
			return false
		}
		key, ok := d.key()
		if !ok {
			return false
		}
		f := fieldUnknown
		if fields != nil {
			f = lookupField(key, fields, folded)
		}
		if !d.expect(':', "after object key") {
			return false
		}
		if _, ok := d.peek(); !ok || !set(f, d.pos) {
			return false
		}
		if more, ok := d.next('}', "object key:value pair"); !more {
			return ok
		}
	}
}

// bountyField consumes the value at start (= d.pos) for field f of w.
func (d *wireDecoder) bountyField(w *wireBounty, f wireField, start int) bool {
	var sp **string
	var rp *json.RawMessage
	switch f {
	case fieldID:
		rp = &w.ID
	case fieldGUID:
		rp = &w.GUID
	case fieldExpiration:
		rp = &w.Expiration
	case fieldMetadata:
		rp = &w.Metadata
	case fieldDuration:
		rp = &w.Duration
	case fieldTaskedAt:
		rp = &w.TaskedAt
	case fieldArtifactType:
		sp = &w.ArtifactType
	case fieldArtifactURI:
		sp = &w.ArtifactURI
	case fieldArtifactURL:
		sp = &w.ArtifactURL
	case fieldSHA256:
		sp = &w.SHA256
	case fieldMIMEType:
		sp = &w.MIMEType
	case fieldResponseURL:
		sp = &w.ResponseURL
	case fieldPhase:
		sp = &w.Phase
	case fieldRules:
		return d.rules(w)
	default:
		return d.value(1)
	}
	if rp != nil {
		if !d.value(1) {
			return false
		}
		*rp = d.data[start:d.pos]
		return true
	}
	return d.stringField(sp, fieldName(f))
}

func fieldName(f wireField) string {
	for _, bf := range bountyFields {
		if bf.f == f {
			return bf.name
		}
	}
	return ""
}

// stringField decodes a string (or null) into *sp.
func (d *wireDecoder) stringField(sp **string, name string) bool {
	switch c := d.data[d.pos]; c {
	case '"':
		s, ok := d.str()
		if !ok {
			return false
		}
		*sp = &s
		return true
	case 'n':
		if !d.value(1) {
			return false
		}
		*sp = nil
		return true
	default:
		if !d.value(1) {
			return false
		}
		d.typeErr(kindOf(c), name)
		return true
	}
}

// rules decodes the rules object (or null) into w.Rules.
func (d *wireDecoder) rules(w *wireBounty) bool {
	switch c := d.data[d.pos]; c {
	case '{':
		if w.Rules == nil {
			w.Rules = new(wireRules)
		}
		r := w.Rules
		return d.members(2, rulesFields, rulesFolded, func(f wireField, start int) bool {
			if !d.value(2) {
				return false
			}
			switch f {
			case fieldMin:
				r.Min = d.data[start:d.pos]
			case fieldMax:
				r.Max = d.data[start:d.pos]
			}
			return true
		})
	case 'n':
		if !d.value(1) {
			return false
		}
		w.Rules = nil
		return true
	default:
		if !d.value(1) {
			return false
		}
		d.typeErr(kindOf(c), "rules")
		return true
	}
}

// value consumes (and validates) the JSON value at d.pos, nested depth
// deep.
func (d *wireDecoder) value(depth int) bool {
	c, ok := d.peek()
	if !ok {
		return false
	}
	switch {
	case c == '{':
		return d.members(depth+1, nil, nil, func(wireField, int) bool { return d.value(depth + 1) })
	case c == '[':
		return d.array(depth + 1)
	case c == '"':
		return d.skipString()
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		return d.number()
	default:
		d.fail("invalid character %s looking for beginning of value", quoteChar(c))
		return false
	}
}

func (d *wireDecoder) array(depth int) bool {
	if depth > maxDepth {
		d.fail("exceeded max depth")
		return false
	}
	d.pos++ // '['
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return true
	}
	for {
		if !d.value(depth) {
			return false
		}
		if more, ok := d.next(']', "array element"); !more {
			return ok
		}
	}
}

func (d *wireDecoder) literal(word string) bool {
	for i := 0; i < len(word); i++ {
		if d.pos >= len(d.data) {
			d.fail("unexpected end of JSON input")
			return false
		}
		if d.data[d.pos] != word[i] {
			d.fail("invalid character %s in literal %s (expecting %s)", quoteChar(d.data[d.pos]), word, quoteChar(word[i]))
			return false
		}
		d.pos++
	}
	return true
}

// number consumes a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *wireDecoder) number() bool {
	data := d.data
	if data[d.pos] == '-' {
		d.pos++
	}
	switch {
	case d.pos >= len(data):
		d.fail("unexpected end of JSON input")
		return false
	case data[d.pos] == '0':
		d.pos++
	case '1' <= data[d.pos] && data[d.pos] <= '9':
		d.digits()
	default:
		d.fail("invalid character %s in numeric literal", quoteChar(data[d.pos]))
		return false
	}
	if d.pos < len(data) && data[d.pos] == '.' {
		d.pos++
		if d.pos >= len(data) {
			d.fail("unexpected end of JSON input")
			return false
		}
		if !isDigit(data[d.pos]) {
			d.fail("invalid character %s after decimal point in numeric literal", quoteChar(data[d.pos]))
			return false
		}
		d.digits()
	}
	if d.pos < len(data) && (data[d.pos] == 'e' || data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(data) && (data[d.pos] == '+' || data[d.pos] == '-') {
			d.pos++
		}
		if d.pos >= len(data) {
			d.fail("unexpected end of JSON input")
			return false
		}
		if !isDigit(data[d.pos]) {
			d.fail("invalid character %s in exponent of numeric literal", quoteChar(data[d.pos]))
			return false
		}
		d.digits()
	}
	return true
}

func (d *wireDecoder) digits() {
	for d.pos < len(d.data) && isDigit(d.data[d.pos]) {
		d.pos++
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// scanString finds the end of the string literal at d.pos (its opening
// quote) and validates it; it reports whether the string is plain (no
// escape, valid UTF-8: its bytes are its value). d.pos is left after the
// closing quote.
func (d *wireDecoder) scanString() (start, end int, plain, ok bool) {
	data := d.data
	d.pos++
	start = d.pos
	plain = true
	// Skip printable ASCII eight bytes at a time: most of a bounty is
	// long plain strings (presigned URLs).
	for d.pos+8 <= len(data) && !special8(binary.LittleEndian.Uint64(data[d.pos:])) {
		d.pos += 8
	}
	for d.pos < len(data) {
		c := data[d.pos]
		switch {
		case c == '"':
			end = d.pos
			d.pos++
			return start, end, plain, true
		case c == '\\':
			plain = false
			d.pos++
			if d.pos >= len(data) {
				d.fail("unexpected end of JSON input")
				return 0, 0, false, false
			}
			switch data[d.pos] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.pos++
			case 'u':
				d.pos++
				for range 4 {
					if d.pos >= len(data) {
						d.fail("unexpected end of JSON input")
						return 0, 0, false, false
					}
					if unhexByte(data[d.pos]) < 0 {
						d.fail("invalid character %s in \\u hexadecimal character escape", quoteChar(data[d.pos]))
						return 0, 0, false, false
					}
					d.pos++
				}
			default:
				d.fail("invalid character %s in string escape code", quoteChar(data[d.pos]))
				return 0, 0, false, false
			}
		case c < 0x20:
			d.fail("invalid character %s in string literal", quoteChar(c))
			return 0, 0, false, false
		case c < utf8.RuneSelf:
			d.pos++
		default:
			r, n := utf8.DecodeRune(data[d.pos:])
			if r == utf8.RuneError && n == 1 {
				plain = false // replaced by U+FFFD
			}
			d.pos += n
		}
	}
	d.fail("unexpected end of JSON input")
	return 0, 0, false, false
}

// special8 reports whether any of the eight bytes in x needs a look in a
// string literal: a control character, '"', '\\' or a non-ASCII byte.
func special8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	if x&highs != 0 {
		return true
	}
	// With every byte below 0x80, (v - ones*n) & ^v & highs is non-zero
	// exactly when some byte of v is below n.
	quote, backslash := x^(ones*'"'), x^(ones*'\\')
	return (x-ones*0x20)&^x&highs|(quote-ones)&^quote&highs|(backslash-ones)&^backslash&highs != 0
}

func (d *wireDecoder) skipString() bool {
	_, _, _, ok := d.scanString()
	return ok
}

// str decodes the string literal at d.pos.
func (d *wireDecoder) str() (string, bool) {
	start, end, plain, ok := d.scanString()
	if !ok {
		return "", false
	}
	if plain {
		return string(d.data[start:end]), true
	}
	return string(unquote(nil, d.data[start:end])), true
}

// key decodes the key at d.pos; the result aliases data or d.buf and is
// valid until the next key.
func (d *wireDecoder) key() ([]byte, bool) {
	start, end, plain, ok := d.scanString()
	if !ok {
		return nil, false
	}
	if plain {
		return d.data[start:end], true
	}
	d.buf = unquote(d.buf[:0], d.data[start:end])
	return d.buf, true
}

// unquote appends to out the value of the validated string literal body
// s: escapes resolved, invalid UTF-8 and lone surrogates as U+FFFD.
func unquote(out, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			i++
			switch s[i] {
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r := hex4(s[i+1:])
				i += 4 // at the escape's last hex digit
				if utf16.IsSurrogate(r) {
					dec := unicode.ReplacementChar
					if i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
						dec = utf16.DecodeRune(r, hex4(s[i+3:]))
					}
					if dec != unicode.ReplacementChar {
						i += 6 // the pair's second half
					}
					r = dec
				}
				out = utf8.AppendRune(out, r)
			default: // " \ /
				out = append(out, s[i])
			}
			i++
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, n := utf8.DecodeRune(s[i:])
			out = utf8.AppendRune(out, r) // U+FFFD for an invalid byte
			i += n
		}
	}
	return out
}

func hex4(s []byte) rune {
	var r rune
	for _, c := range s[:4] {
		r = r<<4 | rune(unhexByte(c))
	}
	return r
}

func unhexByte(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}
