// Package engine is the YARA example engine: it scans each artifact in
// process with libyara (package libyara), with the operator's rules
// compiled once per definitions generation and shared read-only by every
// worker.
//
// # Rules
//
// Scanner.Rules (YARA_RULES in the example program) is a rules file or a
// directory whose *.yar and *.yara files (searched recursively, in lexical
// order) are all compiled into the default namespace; it defaults to
// DATA/rules under the engine's data directory (envdirs:
// PSENGINE_DATA_DIR...). A rules file may include others (include
// "x.yar"), resolved against the directory of the including file. Rules
// that do not compile stop the engine at start with an error naming the
// file and line (*RulesError); the compiler's warnings are logged.
//
// The rules are compiled once at engine setup and after each update that
// changed them; scans never compile. The head's signatures_version is a
// digest of every file compiled: the top files and every file they
// include, so that a change in an included file is a new version.
//
// Update (psengine.Updater) recompiles the rules when any of those files
// changed (or a file was added to or removed from the directory) and the
// engine swaps the new rule set in without pausing scans; rules that no
// longer compile are an error naming the file and line, and the last good
// rules keep serving. A replaced rule set is freed once no scan uses it
// (Releaser). The engine is ready (HealthChecker) while its rules are
// loaded.
//
// # Scans
//
// Each scan takes a libyara scanner of the current rule set for itself
// (scanners are made on demand and reused, so there are as many as scans
// ever ran at once: one per worker) and scans the artifact where it is:
// in memory when the engine holds it there, else its file, mapped. A scan
// is bounded by its context's deadline (in whole seconds: libyara's
// granularity).
//
// # External variables
//
// Rules may use external variables. The file externals are set per scan
// from the artifact, as Loki and THOR set them (public rule sets use them):
//
//   - filename: the base name of the artifact's path or URL path;
//   - filepath: the whole path (a local artifact's absolute path, else the
//     URL's path);
//   - extension: the file name's extension, lowercase with its dot
//     (".exe"), or "";
//   - filetype: the type detected from the content, in capitals (EXE, ELF,
//     MACHO, ZIP, RAR, 7Z, GZIP, BZIP2, XZ, CAB, PDF, RTF, OFFICE, JAR, APK,
//     SCRIPT, TEXT, ...; see FileType), or "";
//   - owner: the user owning a local artifact's file, or "".
//
// Scanner.Externals (YARA_EXTERNALS) defines more, with fixed values: a
// list of name=value separated by commas or newlines. A value is a bool
// (true, false), an integer (42, -7, 0x1f), a float (0.5, 1e3), a string
// in double quotes with Go escapes ("a, \"b\"") or else a bare string as
// written (spaces around it trimmed), see ParseExternals:
//
//	YARA_EXTERNALS='env=prod, max_size=1048576, ratio=0.5, strict=true, label="a, b"'
//
// # Answers
//
// Each matching rule has a score: its `score` meta when that is an integer
// (or a string holding one) from 0 to 100, else DefaultScore (75). A match
// is informational when one of its tags, or its name, is in the
// informational set (Scanner.InfoTags, YARA_INFO_TAGS, comma-separated,
// compared without case; default DefaultInfoTags: info, informational,
// PECheck), or when its score is below SuspiciousScore (40). Informational
// matches are reported but never make a verdict: a program that only
// matches rules like IsPE32 or HasDebugData is not malicious. Then:
//
//   - the best other match scores at least MaliciousScore (70):
//     malicious, its rule name as malware_family, its score as the
//     analysis' Score (which the bid follows);
//   - it scores from SuspiciousScore to MaliciousScore: suspicious (no
//     bid), its rule as malware_family;
//   - no such match: unknown by default (rules that do not match say
//     nothing about a file, and an unknown answer costs nothing); with
//     NoMatch = benign (YARA_NO_MATCH=benign), benign at a low bid
//     (confidence 0.15).
//
// Whenever a rule matched, metadata "yara" reports the matches (Report):
// their count, and the matches themselves, detections first, by score
// then rule order, each with its name, namespace (unless "default"), tags,
// meta (the first value of a repeated key; strings cut at 512 bytes),
// score and whether it is informational. When they would not fit in the
// answer (PolySwarm takes 64 KiB), the report keeps the best ones that fit
// within ReportBudget bytes and says so ("truncated": true); the count
// stays the whole count.
//
// A scan that fails (an unreadable file, libyara's timeout) is an error,
// answered unknown and reported to the error hooks.
//
// The head carries libyara's version as vendor_version and the rules'
// digest as signatures_version, so answers tell which rules gave them.
//
// # Child processes
//
// With the process backend the rule set crosses to each child as libyara's
// saved form (encoding/gob, see Compiled.GobEncode) and is loaded there
// once: children do not compile either.
package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/bid"
	"github.com/polyswarm/psengine/examples/yara/libyara"
	"github.com/polyswarm/psengine/fetch"
)

// Product and Version are the engine's metadata.product and
// metadata.scanner.version.
const (
	Product = "yara"
	Version = "2.0.0"
)

// NoMatchConfidence is the confidence of a benign answer without a
// detection (with NoMatch = benign).
var NoMatchConfidence, _ = bid.VeryUnlikely.Confidence()

// Errors of the engine's setup and scans.
var (
	// ErrRules reports rules that cannot be used: missing, no rule files in
	// a directory, a file that does not compile (*RulesError), or a build
	// without libyara.
	ErrRules = errors.New("yara: unusable rules")
	// ErrScan reports a scan that gave no answer.
	ErrScan = errors.New("yara: scan failed")
	// ErrConfig reports a bad setting, such as an unknown NoMatch verdict
	// or a malformed YARA_EXTERNALS.
	ErrConfig = errors.New("yara: bad setting")
)

// RulesError is a set of rule files that does not compile, with libyara's
// errors (each names the file, an included one maybe, and the line).
type RulesError struct {
	Rules  string            // the rules file or directory as configured
	Errors []libyara.Message // libyara's errors
}

func (e *RulesError) Error() string {
	msgs := make([]string, len(e.Errors))
	for i, m := range e.Errors {
		msgs[i] = m.String()
	}
	return fmt.Sprintf("rules %s do not compile: %s", e.Rules, strings.Join(msgs, "; "))
}

// Unwrap returns ErrRules.
func (e *RulesError) Unwrap() error { return ErrRules }

// Scanner is the YARA engine. Its zero value uses DATA/rules.
type Scanner struct {
	// Rules is a rules file or a directory of them; "" means DATA/rules
	// under the engine's data directory.
	Rules string
	// NoMatch is the verdict without a detection: Unknown (also "") or
	// Benign (at a low bid).
	NoMatch psengine.Verdict
	// Externals defines external variables with fixed values, in
	// ParseExternals' syntax (YARA_EXTERNALS).
	Externals string
	// InfoTags are the tags and rule names whose matches are informational;
	// nil means DefaultInfoTags.
	InfoTags []string
}

var (
	_ psengine.Scanner        = Scanner{}
	_ psengine.EngineSetup    = Scanner{}
	_ psengine.EngineTeardown = Scanner{}
	_ psengine.Describer      = Scanner{}
	_ psengine.Acceptor       = Scanner{}
	_ psengine.Commander      = Scanner{}
)

// Compiled is a rule set the engine serves with, held in its Env: the
// compiled rules, what they were compiled from, and the answer policy.
// Its scanners are its own: Close frees them with the rules.
type Compiled struct {
	Rules     string     // as configured (file or directory)
	Files     []string   // the top rule files, absolute and sorted
	Sources   []Source   // every file compiled, top and included, in the order read
	Digest    string     // 16 hex digits of SHA-256 over Sources' names and contents
	Externals []External // from Scanner.Externals
	Policy    Policy
	Warnings  []string // the compiler's

	rules   *libyara.Rules
	matches []Match // per rule of rules, as reported

	// The result cache's key (cache.go): the configuration, and whether
	// the rules may read a file external of the artifact's name.
	config      string
	namesMatter bool

	mu     sync.Mutex
	free   []*libyara.Scanner // idle scanners
	out    int                // scanners in use
	closed bool
}

// Source is a file compiled into a rule set.
type Source struct {
	Path     string // absolute
	Included bool   // read for an include statement
	SHA256   string // hex
}

// readBack reads the source again: ok is false when it cannot be read or
// its content changed since it was compiled.
func (s Source) readBack() (data []byte, ok bool) {
	data, err := os.ReadFile(s.Path)
	if err != nil {
		return nil, false
	}
	sum := sha256.Sum256(data)
	return data, hex.EncodeToString(sum[:]) == s.SHA256
}

var compiledKey = psengine.NewKey[*Compiled]("yara.compiled")

// CompiledOf returns the rule set env holds after SetupEngine.
func CompiledOf(env psengine.Env) (*Compiled, bool) { return compiledKey.Value(env) }

// SetupEngine compiles the rules. Missing rules, rules that do not compile
// or a bad setting stop the engine with an error naming what is wrong.
func (s Scanner) SetupEngine(ctx context.Context, env psengine.Env) (psengine.Env, error) {
	c, err := s.Compile(ctx, env)
	if err != nil {
		return env, err
	}
	for _, w := range c.Warnings {
		env.Logger().WarnContext(ctx, "yara rules: "+w)
	}
	return compiledKey.With(env, c), nil
}

// TeardownEngine frees the rules.
func (s Scanner) TeardownEngine(ctx context.Context, env psengine.Env) error {
	return s.Release(ctx, env)
}

// Compile checks the settings, finds the rule files and compiles them.
// Close the result when done. Errors wrap ErrConfig or ErrRules (a
// *RulesError for rules that do not compile).
func (s Scanner) Compile(ctx context.Context, env psengine.Env) (*Compiled, error) {
	policy, err := s.policy()
	if err != nil {
		return nil, err
	}
	externals, err := ParseExternals(s.Externals)
	if err != nil {
		return nil, err
	}
	c := &Compiled{Rules: s.Rules, Externals: externals, Policy: policy}
	if c.Rules == "" {
		if env.Dirs().Data == "" {
			return nil, fmt.Errorf("%w: no rules given (YARA_RULES) and no data directory", ErrRules)
		}
		c.Rules = filepath.Join(env.Dirs().Data, "rules")
	}
	if c.Files, err = ruleFiles(c.Rules); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	comp, err := libyara.NewCompiler()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRules, err)
	}
	defer comp.Close()
	for _, name := range FileExternals {
		if err := comp.Define(name, ""); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRules, err)
		}
	}
	for _, x := range externals {
		if err := comp.Define(x.Name, x.Value); err != nil {
			return nil, fmt.Errorf("%w: YARA_EXTERNALS: %w", ErrConfig, err)
		}
	}
	for _, f := range c.Files {
		if err := comp.AddFile(f, ""); err != nil {
			if ce, ok := errors.AsType[*libyara.CompileError](err); ok {
				return nil, &RulesError{Rules: c.Rules, Errors: ce.Errors}
			}
			return nil, fmt.Errorf("%w: %w", ErrRules, err)
		}
	}
	for _, w := range comp.Warnings() {
		c.Warnings = append(c.Warnings, w.String())
	}
	for _, f := range comp.Files() {
		c.Sources = append(c.Sources, Source{Path: f.Path, Included: f.Included, SHA256: hex.EncodeToString(f.SHA256[:])})
	}
	c.Digest = digest(c.Rules, c.Sources)
	c.config, c.namesMatter = c.cacheConfig(), usesNames(c.Sources)
	rules, err := comp.Rules()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRules, err)
	}
	c.serve(rules)
	return c, nil
}

// serve makes c serve with rules.
func (c *Compiled) serve(rules *libyara.Rules) {
	c.rules = rules
	c.matches = make([]Match, rules.Len())
	for i, r := range rules.Rules() {
		c.matches[i] = c.Policy.match(r)
	}
}

// Includes lists the files included by the rule files, each once, in the
// order first read.
func (c *Compiled) Includes() []string {
	var out []string
	for _, s := range c.Sources {
		if s.Included && !slices.Contains(out, s.Path) {
			out = append(out, s.Path)
		}
	}
	return out
}

// RuleCount is the number of rules compiled, private ones included.
func (c *Compiled) RuleCount() int { return len(c.matches) }

// Close frees the rules and their scanners: at once when no scan uses
// them, else when the last scan ends. Scans started afterwards fail.
func (c *Compiled) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	for _, s := range c.free {
		s.Close()
	}
	c.free = nil
	if c.out == 0 {
		c.freeRules()
	}
}

// freeRules frees the rules; c.mu is held and no scanner is open.
func (c *Compiled) freeRules() {
	if c.rules != nil {
		_ = c.rules.Close() // cannot fail: every scanner is closed
		c.rules = nil
	}
}

// scanner takes a scanner of the rules for one scan; put gives it back.
func (c *Compiled) scanner() (*libyara.Scanner, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.rules == nil {
		return nil, fmt.Errorf("%w: the rule set was released", ErrRules)
	}
	if n := len(c.free); n > 0 {
		s := c.free[n-1]
		c.free = c.free[:n-1]
		c.out++
		return s, nil
	}
	s, err := c.rules.NewScanner()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrScan, err)
	}
	c.out++
	return s, nil
}

func (c *Compiled) put(s *libyara.Scanner) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out--
	if !c.closed {
		c.free = append(c.free, s)
		return
	}
	s.Close()
	if c.out == 0 {
		c.freeRules()
	}
}

// ruleFiles returns the rules file, or the *.yar and *.yara files under a
// directory, absolute and sorted.
func ruleFiles(rules string) ([]string, error) {
	abs, err := filepath.Abs(rules)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRules, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRules, err)
	}
	if !st.IsDir() {
		return []string{abs}, nil
	}
	var files []string
	err = filepath.WalkDir(abs, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := strings.ToLower(filepath.Ext(path)); !d.IsDir() && (ext == ".yar" || ext == ".yara") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRules, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no *.yar or *.yara file in %s", ErrRules, abs)
	}
	slices.Sort(files)
	return files, nil
}

// digest is 16 hex digits of SHA-256 over the sources' names (relative to
// the rules' directory, so that moving the rules keeps it), whether each
// was included, and their contents' digests.
func digest(rules string, sources []Source) string {
	root, _ := filepath.Abs(rules)
	if st, err := os.Stat(root); err == nil && !st.IsDir() {
		root = filepath.Dir(root)
	}
	h := sha256.New()
	for _, s := range sources {
		name := s.Path
		if rel, err := filepath.Rel(root, s.Path); err == nil && !strings.HasPrefix(rel, "..") {
			name = rel
		}
		fmt.Fprintf(h, "%s\x00%v\x00%s\n", name, s.Included, s.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Describe is the head: libyara's version and the rules' digest.
func (Scanner) Describe(_ context.Context, env psengine.Env) (psengine.Metadata, error) {
	m := psengine.Metadata{Product: Product, Scanner: psengine.ScannerInfo{Version: Version, VendorVersion: libyara.Version()}}
	if c, ok := CompiledOf(env); ok {
		m.Scanner.SignaturesVersion = c.Digest
	}
	return m, nil
}

// Accepts file artifacts: the rules match content.
func (Scanner) Accepts(a psengine.Artifact) bool { return a.Type == psengine.FileArtifact }

// Scan scans the artifact with the rules and answers by the policy (see
// the package doc). The env must come from SetupEngine (or hold a
// Compiled a test made with Compile).
func (Scanner) Scan(ctx context.Context, env psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	c, ok := CompiledOf(env)
	if !ok {
		return psengine.Analysis{}, fmt.Errorf("%w: the env holds no compiled rules (run SetupEngine)", ErrConfig)
	}
	matches, err := c.ScanArtifact(ctx, a)
	if err != nil {
		return psengine.Analysis{}, err
	}
	return c.Policy.Classify(matches), nil
}

// ScanArtifact returns the matches of the rules on a, with the file
// externals taken from it.
func (c *Compiled) ScanArtifact(ctx context.Context, a psengine.Artifact) ([]Match, error) {
	return c.scan(ctx, ArtifactExternals(a), func(s *libyara.Scanner) ([]*libyara.Rule, error) {
		r, err := a.Open()
		if err != nil {
			return nil, err
		}
		if f, ok := r.(*os.File); ok { // on disk: libyara maps it
			defer f.Close()
			return s.ScanFD(f)
		}
		r.Close()
		data, err := a.Bytes() // held in memory: no copy
		if err != nil {
			path, perr := a.Path()
			if perr != nil {
				return nil, err
			}
			return s.ScanFile(path)
		}
		return s.ScanMem(data)
	})
}

// ScanFile returns the matches of the rules on the file at path, with the
// file externals of that path (its type detected from its first bytes).
func (c *Compiled) ScanFile(ctx context.Context, path string) ([]Match, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	var mimeType string
	if f, err := os.Open(abs); err == nil {
		head := make([]byte, fetch.HeadSize)
		n, _ := io.ReadFull(f, head)
		f.Close()
		mimeType = psengine.DetectMIMEType(head[:n])
	}
	return c.scan(ctx, PathExternals(abs, true, mimeType), func(s *libyara.Scanner) ([]*libyara.Rule, error) {
		return s.ScanFile(abs)
	})
}

func (c *Compiled) scan(ctx context.Context, fx FileValues, run func(*libyara.Scanner) ([]*libyara.Rule, error)) ([]Match, error) {
	if err := ctx.Err(); err != nil {
		return nil, context.Cause(ctx)
	}
	s, err := c.scanner()
	if err != nil {
		return nil, err
	}
	defer c.put(s)
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	s.SetTimeout(timeout)
	for i, v := range fx.values() {
		if err := s.Define(FileExternals[i], v); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrScan, err)
		}
	}
	rules, err := run(s)
	switch {
	case errors.Is(err, libyara.ErrTimeout):
		return nil, fmt.Errorf("%w: %w (%w)", ErrScan, err, context.DeadlineExceeded)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrScan, err)
	}
	out := make([]Match, len(rules))
	for i, r := range rules {
		out[i] = c.matches[r.Index]
	}
	return out, nil
}
