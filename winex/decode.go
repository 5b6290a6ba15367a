package winex

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/unicode"
)

// Encoding says how to decode a program's output to UTF-8. The zero value is
// Auto. Encodings compare with ==.
type Encoding struct {
	name string
	enc  encoding.Encoding // nil for Auto and UTF8
}

var (
	// Auto detects: a byte-order mark (UTF-8, UTF-16LE, UTF-16BE), else
	// UTF-16LE when NUL bytes sit mostly at odd offsets (ASCII text as
	// `cmd /u` writes it), else UTF-8 when the bytes are valid UTF-8, else
	// code page 1252 (Wine's ANSI code page in a UTF-8 locale).
	Auto = Encoding{}
	// UTF8 takes the bytes as UTF-8 (a BOM is dropped); invalid sequences
	// become U+FFFD.
	UTF8 = Encoding{name: "UTF-8"}
	// UTF16LE is little-endian UTF-16 with or without a BOM.
	UTF16LE = Encoding{name: "UTF-16LE", enc: unicode.UTF16(unicode.LittleEndian, unicode.UseBOM)}
	// UTF16BE is big-endian UTF-16 with or without a BOM.
	UTF16BE = Encoding{name: "UTF-16BE", enc: unicode.UTF16(unicode.BigEndian, unicode.UseBOM)}
	// CP1252 is Windows code page 1252 (Western European ANSI).
	CP1252 = Encoding{name: "windows-1252", enc: charmap.Windows1252}
	// CP437 is the original IBM PC OEM code page, used by some console tools.
	CP437 = Encoding{name: "IBM437", enc: charmap.CodePage437}
	// CP850 is the Western European OEM code page.
	CP850 = Encoding{name: "IBM850", enc: charmap.CodePage850}
)

// CodePage returns an Encoding for any golang.org/x/text encoding, for
// instance CodePage("windows-1251", charmap.Windows1251). name is what String
// reports.
func CodePage(name string, enc encoding.Encoding) Encoding {
	return Encoding{name: name, enc: enc}
}

// String returns the encoding's name ("auto" for Auto).
func (e Encoding) String() string {
	if e.name == "" {
		return "auto"
	}
	return e.name
}

// Detect returns the encoding Auto chooses for b: UTF8, UTF16LE, UTF16BE or
// CP1252.
func Detect(b []byte) Encoding {
	switch {
	case bytes.HasPrefix(b, []byte{0xEF, 0xBB, 0xBF}):
		return UTF8
	case bytes.HasPrefix(b, []byte{0xFF, 0xFE}):
		return UTF16LE
	case bytes.HasPrefix(b, []byte{0xFE, 0xFF}):
		return UTF16BE
	}
	if e, ok := detectUTF16(b); ok {
		return e
	}
	if utf8.Valid(b) {
		return UTF8
	}
	return CP1252
}

// detectUTF16 recognises BOM-less UTF-16 from where its NUL bytes sit: text
// in scripts below U+0100 has a zero high byte in every code unit, while
// single-byte and UTF-8 text has no NUL at all. At least a quarter of the code
// units must have a zero on one side and almost none on the other.
func detectUTF16(b []byte) (Encoding, bool) {
	units := len(b) / 2
	if units == 0 {
		return Encoding{}, false
	}
	var even, odd int
	for i, c := range b[:2*units] {
		if c == 0 {
			if i%2 == 0 {
				even++
			} else {
				odd++
			}
		}
	}
	switch {
	case 4*odd >= units && 8*even <= odd:
		return UTF16LE, true
	case 4*even >= units && 8*odd <= even:
		return UTF16BE, true
	}
	return Encoding{}, false
}

// Decode converts b to UTF-8 with enc (Auto detects), then turns every line
// ending made of carriage returns and a line feed ("\r\n", and the "\r\r\n"
// that text-mode writes of "\r\n" produce) into "\n". A lone "\r" stays. The
// result is always valid UTF-8: undecodable bytes become U+FFFD, and so does
// a trailing odd byte of UTF-16.
func Decode(b []byte, enc Encoding) string {
	if enc == Auto {
		enc = Detect(b)
	}
	var s string
	switch enc.enc {
	case nil: // UTF8
		s = strings.ToValidUTF8(string(bytes.TrimPrefix(b, []byte{0xEF, 0xBB, 0xBF})), "\uFFFD")
	default:
		out, err := enc.enc.NewDecoder().Bytes(b)
		if err != nil {
			// x/text decoders replace bad input rather than fail; keep a
			// defined result should one ever refuse.
			out = []byte(strings.ToValidUTF8(string(b), "\uFFFD"))
		}
		s = strings.ToValidUTF8(string(out), "\uFFFD")
	}
	return normalizeNewlines(s)
}

// normalizeNewlines replaces each run of '\r' followed by '\n' with '\n'.
func normalizeNewlines(s string) string {
	if !strings.Contains(s, "\r\n") {
		return s
	}
	var sb strings.Builder
	sb.Grow(len(s))
	for {
		line, rest, ok := strings.Cut(s, "\r\n")
		if !ok {
			break
		}
		sb.WriteString(strings.TrimRight(line, "\r"))
		sb.WriteByte('\n')
		s = rest
	}
	sb.WriteString(s)
	return sb.String()
}
