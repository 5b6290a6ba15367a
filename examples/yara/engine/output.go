package engine

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrOutput reports output of yara that is not what `yara -g -m` prints.
var ErrOutput = errors.New("yara: unexpected output")

// Match is one rule that matched, as `yara -g -m` prints it.
type Match struct {
	Rule string   `json:"name"`
	Tags []string `json:"tags"`
	// Meta holds the rule's metadata: string, int64 or bool values. When a
	// rule repeats a key, the first value is kept.
	Meta map[string]any `json:"meta"`
}

// ParseOutput parses what `yara -g -m RULES PATH` printed on stdout for
// the one file PATH: a record "RULE [TAGS] [META] PATH\n" per matching
// rule, in rule order. The path separates the records, so a path holding
// spaces or newlines is fine (meta strings are printed escaped and never
// hold a raw newline). Anything else gives an error wrapping ErrOutput.
func ParseOutput(stdout []byte, path string) ([]Match, error) {
	sep := []byte(" " + path + "\n")
	var matches []Match
	rest := stdout
	for len(rest) > 0 {
		i := bytes.Index(rest, sep)
		if i < 0 {
			return nil, fmt.Errorf("%w: %s does not end with the scanned path", ErrOutput, quote(rest))
		}
		m, err := ParseMatch(string(rest[:i]))
		if err != nil {
			return nil, err
		}
		matches = append(matches, m)
		rest = rest[i+len(sep):]
	}
	return matches, nil
}

// ParseMatch parses one record of `yara -g -m` without its path:
//
//	RULE [TAG,TAG] [key="escaped string",n =5,flag=true]
//
// Strings are unescaped as yara escapes them (\n, \t, \", \\ and octal
// \NNN for other bytes); a string that is not UTF-8 afterwards has its
// invalid bytes replaced by U+FFFD.
func ParseMatch(s string) (Match, error) {
	p := &parser{s: s}
	m := Match{Tags: []string{}, Meta: map[string]any{}}
	m.Rule = p.ident()
	if m.Rule == "" {
		return Match{}, p.fail("no rule name")
	}
	if !p.take(" [") {
		return Match{}, p.fail("no tag list")
	}
	for !p.take("]") {
		if len(m.Tags) > 0 && !p.take(",") {
			return Match{}, p.fail("tags not separated by ','")
		}
		tag := p.ident()
		if tag == "" {
			return Match{}, p.fail("bad tag")
		}
		m.Tags = append(m.Tags, tag)
	}
	if !p.take(" [") {
		return Match{}, p.fail("no meta list")
	}
	for n := 0; !p.take("]"); n++ {
		if n > 0 && !p.take(",") {
			return Match{}, p.fail("meta not separated by ','")
		}
		key := p.ident()
		if key == "" {
			return Match{}, p.fail("bad meta key")
		}
		var v any
		switch {
		case p.take("=\""):
			str, ok := p.quoted()
			if !ok {
				return Match{}, p.fail("bad meta string")
			}
			v = str
		case p.take("=true"):
			v = true
		case p.take("=false"):
			v = false
		case p.take(" ="):
			n, ok := p.integer()
			if !ok {
				return Match{}, p.fail("bad meta integer")
			}
			v = n
		default:
			return Match{}, p.fail("bad meta value")
		}
		if _, dup := m.Meta[key]; !dup {
			m.Meta[key] = v
		}
	}
	if p.i != len(p.s) {
		return Match{}, p.fail("text after the meta list")
	}
	return m, nil
}

type parser struct {
	s string
	i int
}

func (p *parser) fail(why string) error {
	return fmt.Errorf("%w: %s at byte %d of %s", ErrOutput, why, p.i, quote([]byte(p.s)))
}

func (p *parser) take(lit string) bool {
	if strings.HasPrefix(p.s[p.i:], lit) {
		p.i += len(lit)
		return true
	}
	return false
}

// ident reads a yara identifier: letters, digits and '_'.
func (p *parser) ident() string {
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			break
		}
		p.i++
	}
	return p.s[start:p.i]
}

func (p *parser) integer() (int64, bool) {
	start := p.i
	if p.i < len(p.s) && p.s[p.i] == '-' {
		p.i++
	}
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	n, err := strconv.ParseInt(p.s[start:p.i], 10, 64)
	return n, err == nil
}

// quoted reads the rest of a string whose opening quote was taken.
func (p *parser) quoted() (string, bool) {
	var b []byte
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '"':
			return strings.ToValidUTF8(string(b), "\uFFFD"), true
		case c != '\\':
			b = append(b, c)
			continue
		}
		if p.i >= len(p.s) {
			return "", false
		}
		e := p.s[p.i]
		p.i++
		switch e {
		case 'n':
			b = append(b, '\n')
		case 't':
			b = append(b, '\t')
		case 'r':
			b = append(b, '\r')
		case '"', '\\':
			b = append(b, e)
		case 'x':
			if p.i+2 > len(p.s) {
				return "", false
			}
			v, err := strconv.ParseUint(p.s[p.i:p.i+2], 16, 8)
			if err != nil {
				return "", false
			}
			b = append(b, byte(v))
			p.i += 2
		default:
			if e < '0' || e > '3' || p.i+2 > len(p.s) {
				return "", false
			}
			v, err := strconv.ParseUint(p.s[p.i-1:p.i+2], 8, 8)
			if err != nil {
				return "", false
			}
			b = append(b, byte(v))
			p.i += 2
		}
	}
	return "", false
}

// quote shortens and quotes output for an error message.
func quote(b []byte) string {
	const max = 200
	s := string(b)
	if len(s) > max {
		s = s[:max]
		for !utf8.ValidString(s) && len(s) > 0 {
			s = s[:len(s)-1]
		}
		s += "..."
	}
	return strconv.Quote(s)
}
