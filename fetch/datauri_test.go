package fetch_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/polyswarm/psengine/fetch"
)

// parsed is what a test compares of a DataURI: its fields and decoded payload.
type parsed struct {
	MediaType string
	Params    map[string]string
	Base64    bool
	Payload   string
}

func parse(t testing.TB, s string) (parsed, error) {
	t.Helper()
	d, err := fetch.ParseDataURI(s)
	if err != nil {
		return parsed{}, err
	}
	b, err := io.ReadAll(d.Reader())
	if err != nil {
		t.Fatalf("ParseDataURI(%.80q) accepted, but its Reader failed: %v", s, err)
	}
	if int64(len(b)) != d.Size() {
		t.Fatalf("ParseDataURI(%.80q): Size() = %d, Reader gave %d bytes", s, d.Size(), len(b))
	}
	return parsed{d.MediaType, d.Params, d.Base64, string(b)}, nil
}

var ascii = map[string]string{"charset": "US-ASCII"}

func TestParseDataURI(t *testing.T) {
	std := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	bin := []byte{0xfb, 0xff, 0xbf, 0x00, 0x10, 0xfe}
	tests := []struct {
		name string
		in   string
		want parsed
	}{
		{"RFC 2397 text", "data:,A%20brief%20note", parsed{"text/plain", ascii, false, "A brief note"}},
		{"charset", "data:text/plain;charset=iso-8859-7,%be%d3%be", parsed{"text/plain", map[string]string{"charset": "iso-8859-7"}, false, "\xbe\xd3\xbe"}},
		{"base64", "data:image/gif;base64," + std([]byte("GIF87a")), parsed{"image/gif", map[string]string{}, true, "GIF87a"}},
		{"case-insensitive markers", "DATA:Text/HTML;BASE64,PGI+aGk8L2I+", parsed{"text/html", map[string]string{}, true, "<b>hi</b>"}},
		{"empty type, base64", "data:;base64,QUJD", parsed{"text/plain", ascii, true, "ABC"}},
		{"charset without type", "data:;charset=utf-8,%C3%A9", parsed{"text/plain", map[string]string{"charset": "utf-8"}, false, "é"}},
		{"url alphabet", "data:;base64," + base64.URLEncoding.EncodeToString(bin), parsed{"text/plain", ascii, true, string(bin)}},
		{"no padding", "data:;base64,QQ", parsed{"text/plain", ascii, true, "A"}},
		{"one pad of two", "data:;base64,QQ=", parsed{"text/plain", ascii, true, "A"}},
		{"whitespace", "data:;base64, QU\r\nJD\tRA==\n", parsed{"text/plain", ascii, true, "ABCD"}},
		{"percent-escaped base64", "data:;base64,%2B%2F8%3D", parsed{"text/plain", ascii, true, "\xfb\xff"}},
		{"mixed alphabets", "data:;base64,-/_+", parsed{"text/plain", ascii, true, "\xfb\xff\xfe"}},
		{"params", "data:application/octet-stream; name=a%20b.exe ;Foo=bar;base64,AA==",
			parsed{"application/octet-stream", map[string]string{"name": "a b.exe", "foo": "bar"}, true, "\x00"}},
		{"first duplicate wins", "data:text/plain;a=1;A=2,x", parsed{"text/plain", map[string]string{"a": "1"}, false, "x"}},
		{"empty parameter ignored", "data:text/plain;;a=;,x", parsed{"text/plain", map[string]string{"a": ""}, false, "x"}},
		{"empty payload", "data:,", parsed{"text/plain", ascii, false, ""}},
		{"empty base64 payload", "data:;base64,", parsed{"text/plain", ascii, true, ""}},
		{"literal specials", "data:,a#b?c d,e", parsed{"text/plain", ascii, false, "a#b?c d,e"}},
		{"spaces around base64 marker", "data:text/plain ; base64 ,QQ==", parsed{"text/plain", map[string]string{}, true, "A"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parse(t, tt.in)
			if err != nil {
				t.Fatalf("ParseDataURI(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseDataURI(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseDataURIErrors(t *testing.T) {
	tests := []struct {
		in      string
		message string // a part of the error message
	}{
		{"", "not a data: URI"},
		{" data:,x", "not a data: URI"},
		{"datx:,a", "not a data: URI"},
		{"data:abc", "no comma"},
		{"data:text,x", `media type "text" is not type/subtype`},
		{"data:te xt/plain,x", "is not type/subtype"},
		{"data:text/plain;x,abc", `parameter "x" is not name=value`},
		{"data:;base64;x=y,QQ==", `parameter "base64" is not name=value`},
		{"data:text/plain;a=%zz,x", "parameter a: bad percent-escape"},
		{"data:;base64,QQ=Q", "data after padding at byte 16"},
		{"data:;base64,QQ===", "too much base64 padding at byte 17"},
		{"data:;base64,Q", "truncated"},
		{"data:;base64,QUJDR", "truncated"},
		{"data:;base64,QQ!=", `invalid base64 character '!' at byte 15`},
		{"data:;base64,QQ%3", "bad percent-escape at byte 15"},
		{"data:;base64,QQ%25", `invalid base64 character '%' at byte 15`},
		{"data:,100%", "bad percent-escape at byte 9"},
		{"data:,%zz", "bad percent-escape at byte 6"},
	}
	for _, tt := range tests {
		_, err := fetch.ParseDataURI(tt.in)
		if !errors.Is(err, fetch.ErrMalformedURI) {
			t.Errorf("ParseDataURI(%q) = %v, want ErrMalformedURI", tt.in, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.message) {
			t.Errorf("ParseDataURI(%q) = %q, want it to mention %q", tt.in, err, tt.message)
		}
		assertOneLine(t, err)
	}
}

// TestDataURIReaderStreams decodes a large, awkwardly encoded payload
// (URL alphabet, line breaks, percent-escapes, no padding) through readers
// that take one byte at a time, and through iotest's reader checks.
func TestDataURIReaderStreams(t *testing.T) {
	want := randomBytes(100_003, 1)
	enc := base64.RawURLEncoding.EncodeToString(want)
	var b strings.Builder
	b.WriteString("data:application/octet-stream;base64,")
	for i := 0; i < len(enc); i++ {
		if i%76 == 0 && i > 0 {
			b.WriteString("\r\n")
		}
		if i%1000 == 7 {
			b.WriteString("%" + strings.ToUpper(hexByte(enc[i])))
			continue
		}
		b.WriteByte(enc[i])
	}
	d, err := fetch.ParseDataURI(b.String())
	if err != nil {
		t.Fatal(err)
	}
	if d.Size() != int64(len(want)) {
		t.Fatalf("Size() = %d, want %d", d.Size(), len(want))
	}
	got, err := io.ReadAll(iotest.OneByteReader(d.Reader()))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("one byte at a time: %d bytes, %v; want the payload", len(got), err)
	}
	if err := iotest.TestReader(d.Reader(), want); err != nil {
		t.Fatal(err)
	}

	pct := "data:," + strings.Repeat("ab%20", 5000)
	d, err = fetch.ParseDataURI(pct)
	if err != nil {
		t.Fatal(err)
	}
	if err := iotest.TestReader(d.Reader(), []byte(strings.Repeat("ab ", 5000))); err != nil {
		t.Fatal(err)
	}
}

func hexByte(c byte) string {
	return string("0123456789abcdef"[c>>4]) + string("0123456789abcdef"[c&15])
}

func TestDataURIStringRoundTrips(t *testing.T) {
	payload := []byte("MZ\x90\x00 ;,%#\n\xff")
	params := map[string]string{"name": "évil; file,.exe", "x": ""}
	for _, d := range []fetch.DataURI{
		fetch.NewDataURI("application/x-dosexec", params, payload),
		func() fetch.DataURI { d := fetch.NewDataURI("text/plain", params, payload); d.Base64 = false; return d }(),
	} {
		s := d.String()
		got, err := parse(t, s)
		if err != nil {
			t.Fatalf("ParseDataURI(%q): %v", s, err)
		}
		want := parsed{d.MediaType, params, d.Base64, string(payload)}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ParseDataURI(%q) (-want +got):\n%s", s, diff)
		}
	}
	if got, want := fetch.NewDataURI("text/plain", nil, []byte("hi")).String(), "data:text/plain;base64,aGk="; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func FuzzParseDataURI(f *testing.F) {
	for _, s := range []string{
		"data:,A%20brief%20note", "data:text/plain;charset=iso-8859-7,%be%d3%be",
		"data:image/gif;base64,R0lGODdhMAAwAPAAAAAAAP", "DATA:Text/HTML;BASE64,PGI+aGk8L2I+",
		"data:;base64,-_-_", "data:;base64, QU\r\nJD\tRA== ", "data:;base64,%2B%2F8%3D",
		"data:a/b;x=%41;y=1;base64,", "data:,", "data:;base64,QQ=Q", "data:text,x", "data:,%zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parse(t, s)
		if err != nil {
			if !errors.Is(err, fetch.ErrMalformedURI) {
				t.Fatalf("ParseDataURI(%q) = %v, want ErrMalformedURI", s, err)
			}
			assertOneLine(t, err)
			return
		}
		d, _ := fetch.ParseDataURI(s)
		canonical := d.String()
		again, err := parse(t, canonical)
		if err != nil {
			t.Fatalf("ParseDataURI(%q) accepted; its String %q fails: %v", s, canonical, err)
		}
		if diff := cmp.Diff(got, again); diff != "" {
			t.Fatalf("ParseDataURI(%q) then String %q does not round-trip (-first +second):\n%s", s, canonical, diff)
		}
		d2, _ := fetch.ParseDataURI(canonical)
		if s2 := d2.String(); s2 != canonical {
			t.Fatalf("String is not canonical: %q then %q", canonical, s2)
		}
	})
}

// TestFetchLargeDataURIFallsBack: a large base64 payload that starts as
// plain standard base64 (decoded in large chunks) and later is not (line
// breaks, the URL alphabet, spaces, padding in the middle, a bad character)
// is fetched to the bytes ParseDataURI decodes, or fails with its error, and
// leaves no temp file behind.
func TestFetchLargeDataURIFallsBack(t *testing.T) {
	payload := randomBytes(600_000, 23)
	std := base64.StdEncoding.EncodeToString(payload)
	const at = 200_001 * 4 / 3 // past the first chunks, on a quantum boundary
	var lines strings.Builder
	lines.WriteString(std[:at])
	for i := at; i < len(std); i += 76 {
		lines.WriteString(std[i:min(i+76, len(std))] + "\r\n")
	}
	mime := lines.String()
	tests := map[string]string{
		"plain":                    std,
		"plain without padding":    strings.TrimRight(std, "="),
		"line breaks later":        mime,
		"URL alphabet later":       std[:at] + base64.RawURLEncoding.EncodeToString(payload)[at:],
		"a space later":            std[:at] + " " + std[at:],
		"a space mid-quantum":      std[:at+1] + " " + std[at+1:],
		"a percent-escape later":   std[:at] + "%" + hexByte(std[at]) + std[at+1:],
		"padding in the middle":    std[:at] + "QQ==" + std[at:],
		"a bad character later":    std[:at] + "*" + std[at:],
		"one character left over":  std + "Q",
		"line breaks from the top": mime[at:],
	}
	for name, enc := range tests {
		t.Run(name, func(t *testing.T) {
			uri := "data:application/octet-stream;base64," + enc
			want, perr := parse(t, uri)
			p, dir := testPolicy(t)
			p.MemoryLimit = 64 << 10
			c, err := p.Fetch(t.Context(), uri, "")
			switch {
			case perr != nil && (err == nil || err.Error() != perr.Error()):
				t.Errorf("Fetch: %v; ParseDataURI: %v", err, perr)
			case perr == nil && err != nil:
				t.Errorf("Fetch: %v; ParseDataURI accepts it", err)
			case perr == nil:
				checkContent(t, c, []byte(want.Payload))
				c.Close()
			}
			assertEmptyDir(t, dir)
		})
	}
}
