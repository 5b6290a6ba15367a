// Package selftest gates definition updates on a corpus of files with
// their expected verdicts: a new generation of definitions is promoted only
// if it keeps every expected detection and adds no detection on a file
// marked benign; otherwise the update is refused, naming the files, and
// the last good definitions keep serving.
//
//	corpus, err := selftest.Load("/srv/engine/selftest")
//	engine := psengine.New(scanner, psengine.WithSelfTest(corpus.Test))
//
// (the CLI: --selftest-dir DIR on webhook, worker and update.) The engine
// calls Test with each candidate Env an update brings, after the scanner's
// own SelfTester, and Test scans every file of the corpus with that
// candidate (psengine.CandidateScan), never with the definitions serving.
// Engine.SelfTest runs the same check on the definitions serving (the CLI
// does at start, and in update when nothing new was found).
//
// # The manifest
//
// DIR/manifest.txt lists the files, one per line: its path relative to
// DIR (slash-separated; Go-quoted when it holds spaces or starts with # or
// a quote), what the definitions must say of it, and for a detection
// optionally the family:
//
//	# PATH                EXPECT          [FAMILY]
//	eicar.com             malicious       EICAR*
//	samples/dropper.bin   any-detection
//	docs/readme.txt       benign
//	"with space.txt"      benign
//
// The expectations:
//   - malicious: the verdict must be malicious;
//   - any-detection: malicious or suspicious;
//   - benign: neither malicious nor suspicious (benign or unknown: a file
//     the definitions say nothing of is not a false positive);
//   - FAMILY, with malicious or any-detection: a pattern (path.Match
//     syntax: *, ?, [...]) the malware_family must match, as a whole.
//
// Blank lines and lines starting with # are ignored, and # after
// whitespace starts a comment. Load checks the whole manifest at once
// (every error with its line) and that every file listed is a regular
// file inside DIR. A scan that fails (an error, a panic) fails its file,
// whatever is expected of it: definitions that cannot scan are broken.
// Files of DIR not listed are not scanned.
//
// The expectations are absolute: the candidate must meet all of them, even
// one the definitions serving do not meet (keep the manifest true of the
// definitions you serve).
package selftest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/fetch"
)

// ManifestFile is the manifest's name in the corpus directory.
const ManifestFile = "manifest.txt"

// Expectation is what the definitions must say of a file.
type Expectation string

// The expectations (see the package doc).
const (
	Malicious    Expectation = "malicious"
	AnyDetection Expectation = "any-detection"
	Benign       Expectation = "benign"
)

// ErrRegression is wrapped by the error of definitions that fail the
// corpus (a *Failure).
var ErrRegression = errors.New("selftest: the definitions fail the self-test corpus")

// ErrManifest is wrapped by the errors of a manifest that cannot be used.
var ErrManifest = errors.New("selftest: bad manifest")

// Entry is one line of the manifest.
type Entry struct {
	Path   string // as written: relative to the corpus directory, slash-separated
	Expect Expectation
	Family string // a path.Match pattern; "" for any
	Line   int
}

// Corpus is a loaded self-test corpus.
type Corpus struct {
	Dir     string // absolute
	Entries []Entry
}

// Load reads DIR/manifest.txt and checks that every file it lists is a
// regular file inside dir. Errors wrap ErrManifest and name each bad line.
func Load(dir string) (*Corpus, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrManifest, err)
	}
	name := filepath.Join(abs, ManifestFile)
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrManifest, err)
	}
	defer f.Close()
	entries, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var errs []error
	for _, e := range entries {
		st, err := os.Stat(filepath.Join(abs, filepath.FromSlash(e.Path)))
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("line %d: %w", e.Line, err))
		case !st.Mode().IsRegular():
			errs = append(errs, fmt.Errorf("line %d: %s is not a regular file", e.Line, e.Path))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s: %w: %w", name, ErrManifest, errors.Join(errs...))
	}
	return &Corpus{Dir: abs, Entries: entries}, nil
}

// maxLine bounds a manifest line.
const maxLine = 64 << 10

// Parse reads a manifest. Errors wrap ErrManifest and name every bad line.
func Parse(r io.Reader) ([]Entry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	var out []Entry
	var errs []error
	seen := map[string]int{}
	for n := 1; sc.Scan(); n++ {
		fields, err := splitLine(sc.Text())
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", n, err))
			continue
		}
		if len(fields) == 0 {
			continue
		}
		e, err := entry(fields, n)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", n, err))
			continue
		}
		if first, dup := seen[e.Path]; dup {
			errs = append(errs, fmt.Errorf("line %d: %s is listed already (line %d)", n, e.Path, first))
			continue
		}
		seen[e.Path] = n
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 && len(out) == 0 {
		errs = append(errs, errors.New("no files listed"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrManifest, errors.Join(errs...))
	}
	return out, nil
}

// entry makes the entry of a line's fields.
func entry(fields []string, line int) (Entry, error) {
	if len(fields) < 2 || len(fields) > 3 {
		return Entry{}, fmt.Errorf("want PATH EXPECT [FAMILY], got %d fields", len(fields))
	}
	e := Entry{Path: fields[0], Expect: Expectation(strings.ToLower(fields[1])), Line: line}
	if !filepath.IsLocal(filepath.FromSlash(e.Path)) || strings.Contains(e.Path, "\\") {
		return Entry{}, fmt.Errorf("path %q: want a slash-separated path inside the corpus directory", e.Path)
	}
	e.Path = path.Clean(e.Path)
	switch e.Expect {
	case Malicious, AnyDetection, Benign:
	default:
		return Entry{}, fmt.Errorf("%q: want malicious, any-detection or benign", fields[1])
	}
	if len(fields) == 3 {
		if e.Expect == Benign {
			return Entry{}, errors.New("a family applies to malicious and any-detection only")
		}
		e.Family = fields[2]
		if _, err := path.Match(e.Family, ""); err != nil {
			return Entry{}, fmt.Errorf("family %q: %w", e.Family, err)
		}
	}
	return e, nil
}

// splitLine splits a line into whitespace-separated fields, a Go-quoted
// field being one; an unquoted field starting with # ends the line.
func splitLine(s string) ([]string, error) {
	var out []string
	for {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
		switch {
		case s == "" || s[0] == '#':
			return out, nil
		case s[0] == '"' || s[0] == '`':
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, fmt.Errorf("a quoted field: %w", err)
			}
			v, _ := strconv.Unquote(q) // a valid prefix unquotes
			s = s[len(q):]
			if s != "" && !unicode.IsSpace(rune(s[0])) {
				return nil, fmt.Errorf("%s: want whitespace after the closing quote", q)
			}
			out = append(out, v)
		default:
			end := strings.IndexFunc(s, unicode.IsSpace)
			if end < 0 {
				end = len(s)
			}
			out = append(out, s[:end])
			s = s[end:]
		}
	}
}

// Outcome is what the definitions said of one file.
type Outcome struct {
	Entry
	Verdict psengine.Verdict
	Family  string // the malware_family answered
	Err     error  // the scan failed
}

// OK reports whether the outcome meets the entry's expectation.
func (o Outcome) OK() bool {
	if o.Err != nil {
		return false
	}
	detected := o.Verdict == psengine.Malicious || o.Verdict == psengine.Suspicious
	switch o.Expect {
	case Benign:
		return !detected
	case Malicious:
		if o.Verdict != psengine.Malicious {
			return false
		}
	case AnyDetection:
		if !detected {
			return false
		}
	}
	if o.Entry.Family == "" {
		return true
	}
	ok, _ := path.Match(o.Entry.Family, o.Family)
	return ok
}

// String says what went wrong (or "ok").
func (o Outcome) String() string {
	got := string(o.Verdict)
	if o.Family != "" {
		got += fmt.Sprintf(" %q", o.Family)
	}
	switch {
	case o.Err != nil:
		return fmt.Sprintf("%s: the scan failed: %v", o.Path, o.Err)
	case o.OK():
		return o.Path + ": ok"
	case o.Expect == Benign:
		return fmt.Sprintf("%s: a new detection on a benign file: got %s", o.Path, got)
	}
	want := string(o.Expect)
	if o.Entry.Family != "" {
		want += fmt.Sprintf(" %q", o.Entry.Family)
	}
	return fmt.Sprintf("%s: detection lost: want %s, got %s", o.Path, want, got)
}

// Failure is a candidate that fails the corpus: the files whose
// expectation it does not meet, in manifest order.
type Failure struct {
	Dir     string
	Checked int
	Files   []Outcome
}

func (f *Failure) Error() string {
	msgs := make([]string, len(f.Files))
	for i, o := range f.Files {
		msgs[i] = o.String()
	}
	return fmt.Sprintf("self-test corpus %s: %d of %d files fail: %s", f.Dir, len(f.Files), f.Checked, strings.Join(msgs, "; "))
}

// Unwrap returns ErrRegression.
func (f *Failure) Unwrap() error { return ErrRegression }

// Check scans every file of the corpus with scan, in manifest order, and
// returns the outcomes and, when some file fails its expectation, a
// *Failure naming them. It returns ctx's cause, and no Failure, when ctx
// ends first.
func (c *Corpus) Check(ctx context.Context, scan psengine.CandidateScan) ([]Outcome, error) {
	out := make([]Outcome, 0, len(c.Entries))
	var failed []Outcome
	for _, e := range c.Entries {
		if err := ctx.Err(); err != nil {
			return out, context.Cause(ctx)
		}
		o := c.check(ctx, e, scan)
		if ctx.Err() != nil {
			return out, context.Cause(ctx)
		}
		out = append(out, o)
		if !o.OK() {
			failed = append(failed, o)
		}
	}
	if len(failed) > 0 {
		return out, &Failure{Dir: c.Dir, Checked: len(out), Files: failed}
	}
	return out, nil
}

// check scans one file.
func (c *Corpus) check(ctx context.Context, e Entry, scan psengine.CandidateScan) Outcome {
	name := filepath.Join(c.Dir, filepath.FromSlash(e.Path))
	files := fetch.Local()
	files.Allow = []string{"file"}
	content, err := files.Fetch(ctx, name, "")
	if err != nil {
		return Outcome{Entry: e, Err: err}
	}
	defer content.Close()
	a, err := scan(ctx, psengine.NewArtifact(psengine.FileArtifact, name, content))
	if err != nil {
		return Outcome{Entry: e, Err: err}
	}
	return Outcome{Entry: e, Verdict: a.Verdict, Family: a.Metadata.MalwareFamily}
}

// Test is the corpus as a psengine.SelfTest (psengine.WithSelfTest): it
// checks the candidate with scan and logs the outcome with the
// candidate's logger.
func (c *Corpus) Test(ctx context.Context, candidate psengine.Env, scan psengine.CandidateScan) error {
	out, err := c.Check(ctx, scan)
	log := candidate.Logger()
	version := candidate.Head().Scanner.SignaturesVersion
	if err != nil {
		if f, ok := errors.AsType[*Failure](err); ok {
			for _, o := range f.Files {
				log.WarnContext(ctx, "self-test corpus: the candidate fails a file", "file", o.Path, "expect", string(o.Expect),
					"verdict", string(o.Verdict), "family", o.Family, "err", o.Err, "signatures_version", version)
			}
		}
		return err
	}
	log.InfoContext(ctx, "self-test corpus passed", "dir", c.Dir, "files", len(out), "signatures_version", version)
	return nil
}
