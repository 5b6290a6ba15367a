package logsafe_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/polyswarm/psengine/internal/logsafe"
)

func TestCut(t *testing.T) {
	for _, tt := range []struct {
		s    string
		n    int
		want string
	}{
		{"", 4, ""},
		{"abcd", 4, "abcd"},
		{"abcde", 4, "abcd...[5 bytes]"},
		{"abcde", 0, "...[5 bytes]"},
		{"abcde", -3, "...[5 bytes]"},
		// "é" is 2 bytes, "€" 3: never half a rune.
		{"aé€x", 2, "a...[7 bytes]"},
		{"aé€x", 3, "aé...[7 bytes]"},
		{"aé€x", 4, "aé...[7 bytes]"},
		{"aé€x", 5, "aé...[7 bytes]"},
		{"aé€x", 6, "aé€...[7 bytes]"},
		// Not UTF-8 at all: cut where asked.
		{"\x80\x80\x80\x80\x80\x80", 5, "\x80\x80\x80\x80\x80...[6 bytes]"},
	} {
		if got := logsafe.Cut(tt.s, tt.n); got != tt.want {
			t.Errorf("Cut(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

func TestStringBoundsAHugeID(t *testing.T) {
	id := strings.Repeat("7", 500<<10)
	got := logsafe.String(id)
	want := id[:logsafe.MaxLen] + "...[" + strconv.Itoa(len(id)) + " bytes]"
	if got != want {
		t.Errorf("String of a 500 KiB id: %d bytes %.40q..., want %d bytes", len(got), got, len(want))
	}
	short := strings.Repeat("x", logsafe.MaxLen)
	if logsafe.String(short) != short {
		t.Error("a string of MaxLen bytes was changed")
	}
	if n := testing.AllocsPerRun(100, func() { _ = logsafe.String(short) }); n != 0 {
		t.Errorf("String of a short string: %v allocations, want 0", n)
	}
}

// The result keeps at most n bytes of s, as a prefix, whole runes when s is
// UTF-8, and says how long s was.
func FuzzCut(f *testing.F) {
	for _, s := range []string{"", "abc", "aé€x", "\xff\xfe", strings.Repeat("€", 100)} {
		for _, n := range []int{0, 1, 2, 3, 5, 64} {
			f.Add(s, n)
		}
	}
	f.Fuzz(func(t *testing.T, s string, n int) {
		got := logsafe.Cut(s, n)
		if len(s) <= max(n, 0) {
			if got != s {
				t.Fatalf("Cut(%q, %d) = %q, want it unchanged", s, n, got)
			}
			return
		}
		suffix := fmt.Sprintf("...[%d bytes]", len(s))
		kept, ok := strings.CutSuffix(got, suffix)
		if !ok {
			t.Fatalf("Cut(%q, %d) = %q: no %q suffix", s, n, got, suffix)
		}
		if len(kept) > max(n, 0) || !strings.HasPrefix(s, kept) {
			t.Fatalf("Cut(%q, %d) kept %q: not a prefix of at most %d bytes", s, n, kept, n)
		}
		if utf8.ValidString(s) && !utf8.ValidString(kept) {
			t.Fatalf("Cut(%q, %d) kept %q: half a rune", s, n, kept)
		}
		if utf8.ValidString(s) && n >= utf8.UTFMax && len(kept) <= n-utf8.UTFMax {
			t.Fatalf("Cut(%q, %d) kept only %d bytes", s, n, len(kept))
		}
	})
}

func ExampleString() {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	id := strings.Repeat("9", 1<<20) // a bounty id of 1 MiB, as a request may send
	log.Warn("bounty refused", "bounty", logsafe.Cut(id, 8))
	fmt.Print(buf.String())
	// Output:
	// level=WARN msg="bounty refused" bounty="99999999...[1048576 bytes]"
}
