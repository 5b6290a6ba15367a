package engine

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/polyswarm/psengine/winex"
)

// Marker is what find.exe searches the artifact for: the marker substring of
// the EICAR test file (the whole EICAR string is never written in this
// repository).
const Marker = "EICAR-STANDARD-ANTIVIRUS-TEST-FILE"

// ErrFind reports a find.exe run that gave no verdict: the file could not be
// opened, the exit code was not 0 or 1, or the output did not have the
// expected shape. The error also carries a *FindError.
var ErrFind = errors.New("winescan: find.exe gave no verdict")

// FindError says why a find.exe run gave no verdict.
type FindError struct {
	Path     string // the Windows path given to find.exe ("" when not known)
	ExitCode int
	Reason   string
	// FileNotFound is set when find.exe printed "File not found": it could
	// not open the path (a name Windows cannot use, such as one ending in a
	// dot or a device name like CON).
	FileNotFound bool
	Output       string // the start of what find.exe printed
	Stderr       string // the start of what Wine and find.exe printed on stderr
}

func (e *FindError) Error() string {
	msg := fmt.Sprintf("find.exe exit %d: %s", e.ExitCode, e.Reason)
	if e.Path != "" {
		msg += fmt.Sprintf(" (searching %q)", e.Path)
	}
	if e.Output != "" {
		msg += fmt.Sprintf("; output %q", e.Output)
	}
	if e.Stderr != "" {
		msg += fmt.Sprintf("; stderr %q", e.Stderr)
	}
	return msg
}

// findError wraps a *FindError under ErrFind.
func findError(e *FindError) error { return fmt.Errorf("%w: %w", ErrFind, e) }

// Report is what one find.exe run said about one file.
type Report struct {
	ExitCode int
	// Header is the file find.exe named in its "---------- PATH" line, as it
	// printed it: ASCII letters upper-cased, characters outside code page
	// 1252 replaced (by '?' or a look-alike).
	Header string
	// Found is true when find.exe found the marker (exit code 0).
	Found bool
	// Lines is how many matching lines find.exe printed (the last may be
	// cut short when the output was capped).
	Lines int
}

var (
	findHeader   = regexp.MustCompile(`\A-{10} (?P<path>[^\n]+)(?:\n|\z)`)
	findNotFound = regexp.MustCompile(`\AFile not found - (?P<path>[^\n]*)`)
)

// ParseFind reads the output of `find MARKER PATH` for one PATH, decoded
// to UTF-8 with "\n" line endings (winex.Decode with winex.CP1252), and its
// exit code. Wine's find.exe prints an empty line, "---------- PATH", then
// each matching line, and exits 0 when a line matched, 1 when none did; for
// a file it cannot open it prints "File not found - PATH" and exits 1.
//
// The exit code and the output must agree (0 with at least one matching
// line, 1 with none); anything else is an error wrapping ErrFind with a
// *FindError.
func ParseFind(exitCode int, stdout string) (Report, error) {
	out := strings.TrimLeft(stdout, "\n")
	fail := func(reason string, notFound bool) (Report, error) {
		return Report{}, findError(&FindError{ExitCode: exitCode, Reason: reason, FileNotFound: notFound, Output: head(stdout)})
	}
	if m := winex.Fields(findNotFound, out); m != nil {
		return fail("File not found", true)
	}
	m := winex.Fields(findHeader, out)
	if m == nil {
		return fail("no \"---------- PATH\" header in the output", false)
	}
	r := Report{ExitCode: exitCode, Header: m["path"]}
	if rest := out[len(findHeader.FindString(out)):]; rest != "" {
		r.Lines = strings.Count(rest, "\n")
		if !strings.HasSuffix(rest, "\n") {
			r.Lines++
		}
	}
	switch {
	case exitCode == 0 && r.Lines > 0:
		r.Found = true
	case exitCode == 0:
		return fail("exit code 0 (found) but no matching line printed", false)
	case exitCode == 1 && r.Lines > 0:
		return fail(fmt.Sprintf("exit code 1 (not found) but %d lines printed", r.Lines), false)
	case exitCode == 1:
	default:
		return fail("unexpected exit code", false)
	}
	return r, nil
}

// MatchesFindName reports whether header is what find.exe prints for
// winPath in its "---------- PATH" line. find.exe upper-cases ASCII letters
// only and prints in code page 1252, one byte per UTF-16 unit: a character
// outside the code page comes out as a look-alike (ā as a) or as '?'. So
// header must have as many characters as winPath has UTF-16 units, the same
// ASCII characters (letters upper-cased) in the same places, and anything
// where winPath has a non-ASCII character.
func MatchesFindName(header, winPath string) bool {
	units := utf16.Encode([]rune(winPath))
	got := []rune(header)
	if len(got) != len(units) {
		return false
	}
	for i, u := range units {
		if u < 0x80 && got[i] != unicode.ToUpper(rune(u)) {
			return false
		}
	}
	return true
}

// head returns the start of a program's output for an error message.
func head(s string) string {
	const max = 256
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
