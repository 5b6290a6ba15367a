package winex_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/text/encoding/charmap"

	"github.com/polyswarm/psengine/winex"
)

// utf16le encodes ASCII/BMP text as UTF-16LE, for building test inputs.
func utf16le(s string) []byte {
	var b []byte
	for _, r := range s {
		b = append(b, byte(r), byte(r>>8))
	}
	return b
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		enc  winex.Encoding
		want string
	}{
		{"cp1252 detected", []byte{0x68, 0xe9, 0x6c, 0x6c, 0x6f, 0x0d, 0x0a}, winex.Auto, "héllo\n"},
		{"cp1252 forced", []byte("caf\xe9 \x80 \x9c"), winex.CP1252, "café € œ"},
		{"utf-16le without BOM", utf16le("héllo wörld\r\n"), winex.Auto, "héllo wörld\n"},
		{"utf-16le with BOM", append([]byte{0xff, 0xfe}, utf16le("Zoë ☃\r\n")...), winex.Auto, "Zoë ☃\n"},
		{"utf-16le forced, with BOM", append([]byte{0xff, 0xfe}, utf16le("a\r\nb")...), winex.UTF16LE, "a\nb"},
		{"utf-16le forced, no zero bytes", utf16le("☃☃"), winex.UTF16LE, "☃☃"},
		{"utf-16le odd trailing byte", append(utf16le("ok"), 'x'), winex.UTF16LE, "ok\uFFFD"},
		{"utf-16be with BOM", []byte{0xfe, 0xff, 0, 'h', 0, 'i', 0, '\r', 0, '\n'}, winex.Auto, "hi\n"},
		{"utf-8", []byte("naïve ☃\r\n"), winex.Auto, "naïve ☃\n"},
		{"utf-8 with BOM", []byte("\xef\xbb\xbfbom\r\n"), winex.Auto, "bom\n"},
		{"utf-8 forced on invalid bytes", []byte("a\xffb"), winex.UTF8, "a\uFFFDb"},
		{"ascii", []byte("plain\n"), winex.Auto, "plain\n"},
		{"empty", nil, winex.Auto, ""},
		{"text-mode CR CR LF", []byte("a\r\r\nb\r\n"), winex.Auto, "a\nb\n"},
		{"lone CR kept", []byte("progress 50%\rprogress 100%\r\n"), winex.Auto, "progress 50%\rprogress 100%\n"},
		{"cp437 forced", []byte{0x82, 0x9b}, winex.CP437, "é¢"},
		{"any charmap", []byte{0xcf, 0xe5}, winex.CodePage("windows-1251", charmap.Windows1251), "Пе"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, winex.Decode(tt.in, tt.enc)); diff != "" {
				t.Errorf("Decode(% x, %v) (-want +got):\n%s", tt.in, tt.enc, diff)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		in   []byte
		want winex.Encoding
	}{
		{[]byte("ascii"), winex.UTF8},
		{[]byte("h\xc3\xa9"), winex.UTF8},
		{[]byte("h\xe9"), winex.CP1252},
		{utf16le("hi there"), winex.UTF16LE},
		{[]byte{0, 'h', 0, 'i'}, winex.UTF16BE},
		{[]byte{0xff, 0xfe, 0x03, 0x26}, winex.UTF16LE},
		{[]byte{0xef, 0xbb, 0xbf, 0xe9}, winex.UTF8},
	}
	for _, tt := range tests {
		if got := winex.Detect(tt.in); got != tt.want {
			t.Errorf("Detect(% x) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if winex.Auto.String() != "auto" || winex.CP1252.String() != "windows-1252" {
		t.Errorf("names: %v, %v", winex.Auto, winex.CP1252)
	}
}

func FuzzDecode(f *testing.F) {
	for _, seed := range [][]byte{
		{0x68, 0xe9, 0x6c, 0x6c, 0x6f, 0x0d, 0x0a},
		utf16le("héllo\r\n"),
		append([]byte{0xff, 0xfe}, utf16le("x\r\n")...),
		[]byte("\xef\xbb\xbfutf8\r\r\n"),
		{0xd8, 0x00, 0xdc},
		{0xfe, 0xff, 0x00},
		{'\r'},
	} {
		f.Add(seed)
	}
	encs := []winex.Encoding{winex.Auto, winex.UTF8, winex.UTF16LE, winex.UTF16BE, winex.CP1252, winex.CP437, winex.CP850}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, enc := range encs {
			s := winex.Decode(b, enc)
			if !utf8.ValidString(s) {
				t.Fatalf("Decode(% x, %v) = %q: not valid UTF-8", b, enc, s)
			}
			if strings.Contains(s, "\r\n") {
				t.Fatalf("Decode(% x, %v) = %q: CRLF left", b, enc, s)
			}
		}
		// Auto is the encoding it detects.
		if winex.Decode(b, winex.Auto) != winex.Decode(b, winex.Detect(b)) {
			t.Fatalf("Auto and Detect disagree on % x", b)
		}
		// Valid UTF-8 without NUL survives Auto unchanged, line endings aside.
		if utf8.Valid(b) && !strings.ContainsRune(string(b), 0) && !strings.HasPrefix(string(b), "\xef\xbb\xbf") {
			want := string(b)
			for strings.Contains(want, "\r\n") {
				want = strings.ReplaceAll(want, "\r\n", "\n")
			}
			if got := winex.Decode(b, winex.Auto); got != want {
				t.Fatalf("Decode(%q) = %q, want %q", b, got, want)
			}
		}
	})
}
