package engine_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/google/go-cmp/cmp"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/examples/winescan/engine"
	"github.com/polyswarm/psengine/winex"
)

// The outputs below are what Wine 8.0's find.exe printed (bytes as they
// came: code page 1252, CRLF), for `find EICAR-STANDARD-ANTIVIRUS-TEST-FILE
// PATH`. The matching lines hold the marker only, never the EICAR string.

// markerLine is a line find.exe prints back when it matches.
const markerLine = "junk " + engine.Marker + " junk"

func decode(raw string) string { return winex.Decode([]byte(raw), winex.CP1252) }

func TestParseFind(t *testing.T) {
	tests := []struct {
		name     string
		exit     int
		raw      string
		want     engine.Report
		wantErr  bool
		notFound bool
	}{
		{
			name: "found, path with spaces and code page 1252 letters, snowman as ?",
			exit: 0,
			raw:  "\r\n---------- Z:\\TMP\\D W S\\\xfcN\xefC\xf8D\xe9 ?\\EICAR.COM\r\n" + markerLine + "\r\n",
			want: engine.Report{ExitCode: 0, Header: `Z:\TMP\D W S\üNïCøDé ?\EICAR.COM`, Found: true, Lines: 1},
		},
		{
			name: "found twice",
			exit: 0,
			raw:  "\r\n---------- Z:\\TMP\\TWO\r\n" + markerLine + "\r\n" + markerLine + "\r\n",
			want: engine.Report{ExitCode: 0, Header: `Z:\TMP\TWO`, Found: true, Lines: 2},
		},
		{
			name: "found, output capped mid-line",
			exit: 0,
			raw:  "\r\n---------- Z:\\TMP\\BIG\r\n" + strings.Repeat("x", 100),
			want: engine.Report{ExitCode: 0, Header: `Z:\TMP\BIG`, Found: true, Lines: 1},
		},
		{
			name: "not found",
			exit: 1,
			raw:  "\r\n---------- Z:\\TMP\\WS-DEV\\CLEAN.TXT\r\n",
			want: engine.Report{ExitCode: 1, Header: `Z:\TMP\WS-DEV\CLEAN.TXT`},
		},
		{
			name: "not found, no final line ending",
			exit: 1,
			raw:  "\r\n---------- Z:\\EMPTY",
			want: engine.Report{ExitCode: 1, Header: `Z:\EMPTY`},
		},
		{name: "file not found", exit: 1, raw: "File not found - Z:\\TMP\\WS-DEV\\TRAIL.\r\n", wantErr: true, notFound: true},
		{name: "exit 0 without a line", exit: 0, raw: "\r\n---------- Z:\\A\r\n", wantErr: true},
		{name: "exit 1 with a line", exit: 1, raw: "\r\n---------- Z:\\A\r\n" + markerLine + "\r\n", wantErr: true},
		{name: "exit 2", exit: 2, raw: "\r\n---------- Z:\\A\r\n", wantErr: true},
		{name: "killed", exit: -1, raw: "", wantErr: true},
		{name: "no output", exit: 1, raw: "", wantErr: true},
		{name: "no header", exit: 0, raw: markerLine + "\r\n", wantErr: true},
		{name: "short header rule", exit: 1, raw: "\r\n--------- Z:\\A\r\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := engine.ParseFind(tt.exit, decode(tt.raw))
			if tt.wantErr {
				var fe *engine.FindError
				if !errors.Is(err, engine.ErrFind) || !errors.As(err, &fe) {
					t.Fatalf("ParseFind = %+v, %v; want an error wrapping ErrFind and a *FindError", got, err)
				}
				if fe.FileNotFound != tt.notFound || fe.ExitCode != tt.exit {
					t.Errorf("FindError %+v: want FileNotFound %v, ExitCode %d", fe, tt.notFound, tt.exit)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFind: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseFind (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFindErrorMessage(t *testing.T) {
	_, err := engine.ParseFind(1, decode("File not found - Z:\\A.\r\n"))
	msg := err.Error()
	for _, want := range []string{"find.exe exit 1", "File not found", `Z:\\A.`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	long := "\r\n---------- Z:\\A\r\n" + strings.Repeat("é", 1000) + "\r\n"
	_, err = engine.ParseFind(7, decode(long))
	var fe *engine.FindError
	if !errors.As(err, &fe) || len(fe.Output) > 300 || !strings.HasSuffix(fe.Output, "...") {
		t.Errorf("FindError.Output not shortened: %d bytes", len(fe.Output))
	}
}

func TestMatchesFindName(t *testing.T) {
	tests := []struct {
		header, win string
		want        bool
	}{
		// Pairs Wine 8.0's find.exe produced.
		{`Z:\TMP\WS-DEV\D W S\üNïCøDé ?\EICAR.COM`, `Z:\tmp\ws-dev\d w s\ünïcødé ☃\eicar.com`, true},
		{`Z:\TMP\WS-DEV\a-X`, `Z:\tmp\ws-dev\ā-x`, true},
		{`Z:\TMP\WS-DEV\??-X`, `Z:\tmp\ws-dev\😀-x`, true},
		{`Z:\TMP\WS-DEV\??-X`, `Z:\tmp\ws-dev\日本-x`, true},
		{`Z:\TMP\WS-DEV\ŒœŸ€-X`, `Z:\tmp\ws-dev\ŒœŸ€-x`, true},
		// Not what find.exe prints for the path.
		{`Z:\TMP\B.TXT`, `Z:\tmp\a.txt`, false},
		{`Z:\tmp\a.txt`, `Z:\tmp\a.txt`, false}, // find.exe upper-cases
		{`Z:\TMP\A.TXT2`, `Z:\tmp\a.txt`, false},
		{`Z:\TMP\?-X`, `Z:\tmp\😀-x`, false}, // one '?' per UTF-16 unit
		{``, `Z:\a`, false},
		{``, ``, true},
	}
	for _, tt := range tests {
		if got := engine.MatchesFindName(tt.header, tt.win); got != tt.want {
			t.Errorf("MatchesFindName(%q, %q) = %v, want %v", tt.header, tt.win, got, tt.want)
		}
	}
}

func TestParseVer(t *testing.T) {
	tests := []struct {
		raw, want string
	}{
		{"\r\nMicrosoft Windows 6.1.7601\r\n", "Microsoft Windows 6.1.7601"}, // Wine 8.0
		{"\r\nMicrosoft Windows [Version 10.0.19045.3570]\r\n", "Microsoft Windows 10.0.19045.3570"},
		{"Microsoft Windows 10.0.19045", "Microsoft Windows 10.0.19045"},
	}
	for _, tt := range tests {
		got, err := engine.ParseVer(decode(tt.raw))
		if err != nil || got != tt.want {
			t.Errorf("ParseVer(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "Microsoft Windows XP\r\n", "Windows 6.1.7601", "Microsoft Windows 6\r\n", "wine: could not load kernel32.dll\n"} {
		if got, err := engine.ParseVer(decode(bad)); !errors.Is(err, engine.ErrVersion) {
			t.Errorf("ParseVer(%q) = %q, %v; want an error wrapping ErrVersion", bad, got, err)
		}
	}
}

func TestClassify(t *testing.T) {
	found := engine.Classify(engine.Report{ExitCode: 0, Header: `Z:\A`, Found: true, Lines: 1})
	want := psengine.Analysis{
		Verdict:    psengine.Malicious,
		Confidence: 0.85,
		Metadata:   psengine.Metadata{MalwareFamily: "EICAR-Test-File"},
	}
	if diff := cmp.Diff(want, found); diff != "" {
		t.Errorf("found (-want +got):\n%s", diff)
	}
	clean := engine.Classify(engine.Report{ExitCode: 1, Header: `Z:\A`})
	want = psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.15}
	if diff := cmp.Diff(want, clean); diff != "" {
		t.Errorf("not found (-want +got):\n%s", diff)
	}
}

// findName renders winPath as find.exe prints it, with '?' for every
// non-ASCII UTF-16 unit (what Wine does for characters outside code page
// 1252 without a look-alike).
func findName(winPath string) string {
	var b strings.Builder
	for _, u := range utf16.Encode([]rune(winPath)) {
		switch {
		case u >= 0x80:
			b.WriteByte('?')
		case 'a' <= u && u <= 'z':
			b.WriteByte(byte(u) - 'a' + 'A')
		default:
			b.WriteByte(byte(u))
		}
	}
	return b.String()
}

func FuzzParseFind(f *testing.F) {
	f.Add(0, "\r\n---------- Z:\\TMP\\D W S\\\xfcN\xefC\xf8D\xe9 ?\\EICAR.COM\r\n"+markerLine+"\r\n")
	f.Add(1, "\r\n---------- Z:\\TMP\\CLEAN.TXT\r\n")
	f.Add(1, "File not found - Z:\\TMP\\TRAIL.\r\n")
	f.Add(0, "\r\n---------- Z:\\A\r\n\x00\xff\r\r\n\n")
	f.Add(2, "")
	f.Fuzz(func(t *testing.T, exit int, raw string) {
		out := decode(raw)
		r, err := engine.ParseFind(exit, out)
		if err != nil {
			var fe *engine.FindError
			if !errors.Is(err, engine.ErrFind) || !errors.As(err, &fe) || fe.ExitCode != exit {
				t.Fatalf("error %v: want ErrFind with a *FindError for exit %d", err, exit)
			}
			_ = err.Error()
			return
		}
		if r.ExitCode != exit || r.Found != (exit == 0) || (r.Lines > 0) != r.Found {
			t.Fatalf("inconsistent report %+v for exit %d", r, exit)
		}
		if r.Header == "" || strings.Contains(r.Header, "\n") || !strings.Contains(out, "---------- "+r.Header) {
			t.Fatalf("header %q not a line of the output %q", r.Header, out)
		}
	})
}

func FuzzMatchesFindName(f *testing.F) {
	f.Add(`Z:\tmp\ws-dev\d w s\ünïcødé ☃\eicar.com`, `Z:\TMP`)
	f.Add(`Z:\tmp\😀-x`, `Z:\TMP\??-X`)
	f.Add("Z:\\\xff\xfe", "")
	f.Fuzz(func(t *testing.T, win, header string) {
		_ = engine.MatchesFindName(header, win) // any input: no panic
		if !engine.MatchesFindName(findName(win), win) {
			t.Fatalf("find.exe's rendering %q of %q does not match", findName(win), win)
		}
		// Changing any ASCII character of what find.exe prints makes it
		// another file's name.
		units := utf16.Encode([]rune(win))
		name := []rune(findName(win))
		for i := 0; i < len(units) && i < 64; i++ {
			if units[i] >= 0x80 {
				continue
			}
			other := append([]rune(nil), name...)
			if other[i] = '~'; name[i] == '~' {
				other[i] = '!'
			}
			if engine.MatchesFindName(string(other), win) {
				t.Fatalf("%q matches %q", string(other), win)
			}
		}
	})
}

var vendorVersion = regexp.MustCompile(`^Microsoft Windows \d+(\.\d+){1,3}$`)

func FuzzParseVer(f *testing.F) {
	f.Add("\r\nMicrosoft Windows 6.1.7601\r\n")
	f.Add("Microsoft Windows [Version 10.0.19045.3570]")
	f.Add("Microsoft Windows 1.2.3.4.5.6")
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := engine.ParseVer(decode(raw))
		if err != nil {
			if !errors.Is(err, engine.ErrVersion) {
				t.Fatalf("error %v does not wrap ErrVersion", err)
			}
			return
		}
		if !vendorVersion.MatchString(v) {
			t.Fatalf("vendor version %q from %q", v, raw)
		}
	})
}
