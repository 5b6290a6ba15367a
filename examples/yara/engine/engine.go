// Package engine is the YARA example engine: it runs the yara program on
// each artifact (natively, through winex.Run: deadline, process-group kill,
// bounded output) with the operator's rules.
//
// # Rules
//
// Scanner.Rules (YARA_RULES in the example program) is a rules file or a
// directory whose *.yar and *.yara files (searched recursively) are all
// used; it defaults to DATA/rules under the engine's data directory
// (envdirs: PSENGINE_DATA_DIR...). At engine setup the rules are compiled
// once with yarac into a temporary file that every scan uses (`yara -C`):
// a rules file that does not compile stops the engine at start with an
// error naming it, and the scans do not recompile.
//
// Update (psengine.Updater) recompiles the rules when their files changed
// and the engine swaps the new rule set in without pausing scans; rules
// that no longer compile are an error naming the file, and the last good
// rules keep serving. The replaced rule set is removed once no scan uses
// it (Releaser). The engine is ready (HealthChecker) while its compiled
// rules file is there and readable.
//
// # Answers
//
// yara exits 0 whether or not a rule matched, so the answer comes from its
// output (`-g -m`: tags and meta), never its exit status:
//
//   - one or more rules match: malicious, the first matching rule's name as
//     malware_family, confidence "very likely" (0.85), and every match with
//     its tags and meta in metadata under "yara":
//     {"rules": [{"name": ..., "tags": [...], "meta": {...}}]};
//   - no rule matches: unknown by default (rules that do not match say
//     nothing about a file, and an unknown answer costs nothing); with
//     NoMatch = benign (YARA_NO_MATCH=benign), benign at a low bid
//     (confidence 0.15);
//   - yara fails (exit status 1, such as an unreadable file) or prints
//     something unexpected: an error, answered unknown and reported to the
//     error hooks.
//
// The head carries yara's version as vendor_version and a digest of the
// rule files as signatures_version, so answers tell which rules gave them.
package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/bid"
	"github.com/polyswarm/psengine/winex"
)

// Product and Version are the engine's metadata.product and
// metadata.scanner.version.
const (
	Product = "yara"
	Version = "1.0.0"
)

// Confidences of the answers (see the package doc).
var (
	MatchConfidence, _   = bid.VeryLikely.Confidence()
	NoMatchConfidence, _ = bid.VeryUnlikely.Confidence()
)

// Errors of the engine's setup and scans.
var (
	// ErrRules reports rules that cannot be used: missing, no rule files in
	// a directory, or a file that does not compile (*RulesError).
	ErrRules = errors.New("yara: unusable rules")
	// ErrProgram reports a yara or yarac program that cannot be found or run.
	ErrProgram = errors.New("yara: program unusable")
	// ErrScan reports a yara run that gave no answer (exit status 1).
	ErrScan = errors.New("yara: scan failed")
	// ErrConfig reports a bad setting, such as an unknown NoMatch verdict.
	ErrConfig = errors.New("yara: bad setting")
)

// RulesError is a set of rule files that does not compile, with what
// yarac said (it names the file and line).
type RulesError struct {
	Rules  string // the rules file or directory as configured
	Output string // yarac's messages
}

func (e *RulesError) Error() string {
	return fmt.Sprintf("rules %s do not compile: %s", e.Rules, strings.Join(strings.Fields(e.Output), " "))
}

// Unwrap returns ErrRules.
func (e *RulesError) Unwrap() error { return ErrRules }

// Scanner is the YARA engine.
type Scanner struct {
	// Rules is a rules file or a directory of them; "" means DATA/rules
	// under the engine's data directory.
	Rules string
	// Yara is the yara program; "" means the engine's scanner executable
	// (PSENGINE_SCANNER) when set, else yara on PATH.
	Yara string
	// Yarac is the rules compiler; "" means yarac beside Yara, else on PATH.
	Yarac string
	// NoMatch is the verdict when no rule matches: Unknown (also "") or
	// Benign (at a low bid).
	NoMatch psengine.Verdict
}

var (
	_ psengine.Scanner        = Scanner{}
	_ psengine.EngineSetup    = Scanner{}
	_ psengine.EngineTeardown = Scanner{}
	_ psengine.Describer      = Scanner{}
	_ psengine.Acceptor       = Scanner{}
	_ psengine.Commander      = Scanner{}
)

// Compiled is the engine's rule set after setup, held in its Env.
type Compiled struct {
	Rules       string   // as configured (file or directory)
	Files       []string // the rule files, absolute and sorted
	Path        string   // the compiled rules (yarac's output)
	Digest      string   // 16 hex digits of SHA-256 over the files' names and contents
	Yara        string   // the yara program
	Yarac       string   // the yarac program
	YaraVersion string   // "4.2.3"
	NoMatch     psengine.Verdict
	Dir         string // the temp directory holding Path, which Remove deletes
}

var compiledKey = psengine.NewKey[*Compiled]("yara.compiled")

// CompiledOf returns the rule set env holds after SetupEngine.
func CompiledOf(env psengine.Env) (*Compiled, bool) { return compiledKey.Value(env) }

// SetupEngine finds and compiles the rules. Missing rules, rules that do
// not compile, or missing programs stop the engine with an error naming
// what is wrong.
func (s Scanner) SetupEngine(ctx context.Context, env psengine.Env) (psengine.Env, error) {
	c, err := s.Compile(ctx, env)
	if err != nil {
		return env, err
	}
	return compiledKey.With(env, c), nil
}

// TeardownEngine removes the compiled rules.
func (Scanner) TeardownEngine(_ context.Context, env psengine.Env) error {
	if c, ok := CompiledOf(env); ok {
		return c.Remove()
	}
	return nil
}

// Compile resolves the programs and the rules and compiles the rules into a
// temporary file (under env's temp directory) that Remove deletes.
func (s Scanner) Compile(ctx context.Context, env psengine.Env) (*Compiled, error) {
	c := &Compiled{Rules: s.Rules, NoMatch: s.NoMatch}
	switch c.NoMatch {
	case "":
		c.NoMatch = psengine.Unknown
	case psengine.Unknown, psengine.Benign:
	default:
		return nil, fmt.Errorf("%w: NoMatch %q: want unknown or benign", ErrConfig, s.NoMatch)
	}
	if c.Rules == "" {
		if env.Dirs().Data == "" {
			return nil, fmt.Errorf("%w: no rules given (YARA_RULES) and no data directory", ErrRules)
		}
		c.Rules = filepath.Join(env.Dirs().Data, "rules")
	}
	var err error
	if c.Files, err = ruleFiles(c.Rules); err != nil {
		return nil, err
	}
	if c.Digest, err = digest(c.Files); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRules, err)
	}
	if c.Yara, c.Yarac, err = s.programs(env); err != nil {
		return nil, err
	}
	ver, err := winex.Run(ctx, winex.Cmd{Path: c.Yara, Args: []string{"--version"}})
	if err != nil || ver.ExitCode != 0 {
		return nil, fmt.Errorf("%w: %s --version: exit %d, %v %s", ErrProgram, c.Yara, ver.ExitCode, err, strings.TrimSpace(ver.Stderr))
	}
	c.YaraVersion = strings.TrimSpace(ver.Stdout)

	if c.Dir, err = os.MkdirTemp(env.Dirs().Temp, env.Dirs().TempPrefix+"yara-"); err != nil {
		return nil, fmt.Errorf("yara: compiling the rules: %w", err)
	}
	c.Path = filepath.Join(c.Dir, "rules.yarc")
	res, err := winex.Run(ctx, winex.Cmd{Path: c.Yarac, Args: append(slices.Clone(c.Files), c.Path)})
	switch {
	case err != nil:
		c.Remove()
		return nil, fmt.Errorf("%w: %s: %w", ErrProgram, c.Yarac, err)
	case res.ExitCode != 0:
		c.Remove()
		out := strings.TrimSpace(res.Stderr + "\n" + res.Stdout)
		return nil, &RulesError{Rules: c.Rules, Output: errorLines(out)}
	}
	return c, nil
}

// errorLines keeps yarac's error lines (its warnings only add noise), or
// everything when it printed no error line.
func errorLines(out string) string {
	var errs []string
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, "error") {
			errs = append(errs, line)
		}
	}
	if len(errs) == 0 {
		return out
	}
	return strings.Join(errs, "\n")
}

// Remove deletes the compiled rules.
func (c *Compiled) Remove() error {
	if c.Dir == "" {
		return nil
	}
	return os.RemoveAll(c.Dir)
}

func (s Scanner) programs(env psengine.Env) (yara, yarac string, err error) {
	yara = s.Yara
	if yara == "" {
		yara = env.Dirs().Scanner
	}
	if yara == "" {
		yara = "yara"
	}
	if yara, err = exec.LookPath(yara); err != nil {
		return "", "", fmt.Errorf("%w: %w (install yara)", ErrProgram, err)
	}
	yarac = s.Yarac
	if yarac == "" {
		if beside := filepath.Join(filepath.Dir(yara), "yarac"); isExecutable(beside) {
			yarac = beside
		} else {
			yarac = "yarac"
		}
	}
	if yarac, err = exec.LookPath(yarac); err != nil {
		return "", "", fmt.Errorf("%w: %w (install yara)", ErrProgram, err)
	}
	return yara, yarac, nil
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
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

// digest is 16 hex digits of SHA-256 over the files' names and contents.
func digest(files []string) (string, error) {
	h := sha256.New()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.Base(f), len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// Describe is the head: yara's version and the rules' digest.
func (Scanner) Describe(_ context.Context, env psengine.Env) (psengine.Metadata, error) {
	m := psengine.Metadata{Product: Product, Scanner: psengine.ScannerInfo{Version: Version}}
	if c, ok := CompiledOf(env); ok {
		m.Scanner.VendorVersion, m.Scanner.SignaturesVersion = c.YaraVersion, c.Digest
	}
	return m, nil
}

// Accepts file artifacts: the rules match content.
func (Scanner) Accepts(a psengine.Artifact) bool { return a.Type == psengine.FileArtifact }

// Scan runs `yara -C -w -g -m RULES PATH` on the artifact's file and
// answers from the output (see the package doc). The env must come from
// SetupEngine (or hold a Compiled a test made with Compile).
func (Scanner) Scan(ctx context.Context, env psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	c, ok := CompiledOf(env)
	if !ok {
		return psengine.Analysis{}, fmt.Errorf("%w: the env holds no compiled rules (run SetupEngine)", ErrConfig)
	}
	if ctx.Err() != nil {
		return psengine.Analysis{}, context.Cause(ctx)
	}
	path, err := a.Path()
	if err != nil {
		return psengine.Analysis{}, err
	}
	matches, err := c.ScanFile(ctx, path)
	if err != nil {
		return psengine.Analysis{}, err
	}
	return c.Classify(matches), nil
}

// ScanFile runs yara on one file and returns the rules that matched.
func (c *Compiled) ScanFile(ctx context.Context, path string) ([]Match, error) {
	abs, err := filepath.Abs(path) // never taken for an option
	if err != nil {
		return nil, err
	}
	res, err := winex.Run(ctx, winex.Cmd{Path: c.Yara, Args: []string{"-C", "-w", "-g", "-m", c.Path, abs}})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrScan, err)
	}
	if res.ExitCode != 0 {
		return nil, fmt.Errorf("%w: exit %d: %s", ErrScan, res.ExitCode, strings.Join(strings.Fields(res.Stderr), " "))
	}
	if res.Truncated {
		return nil, fmt.Errorf("%w: output over %d bytes", ErrScan, winex.DefaultMaxOutput)
	}
	return ParseOutput(res.RawStdout, abs)
}

// Classify turns matches into an analysis.
func (c *Compiled) Classify(matches []Match) psengine.Analysis {
	if len(matches) == 0 {
		if c.NoMatch == psengine.Benign {
			return psengine.Analysis{Verdict: psengine.Benign, Confidence: NoMatchConfidence}
		}
		return psengine.Analysis{Verdict: psengine.Unknown}
	}
	rules := make([]any, len(matches))
	for i, m := range matches {
		rules[i] = map[string]any{"name": m.Rule, "tags": m.Tags, "meta": m.Meta}
	}
	return psengine.Analysis{
		Verdict:    psengine.Malicious,
		Confidence: MatchConfidence,
		Metadata: psengine.Metadata{
			MalwareFamily: matches[0].Rule,
			Extra:         map[string]any{"yara": map[string]any{"rules": rules}},
		},
	}
}

// Info is what the info command prints.
type Info struct {
	Yara              string   `json:"yara"`
	Yarac             string   `json:"yarac"`
	VendorVersion     string   `json:"vendor_version"`
	Rules             string   `json:"rules"`
	Files             []string `json:"files"`
	SignaturesVersion string   `json:"signatures_version"`
	NoMatch           string   `json:"no_match"`
}

// FileReport is what the scan_file command prints per file.
type FileReport struct {
	Path    string           `json:"path"`
	Verdict psengine.Verdict `json:"verdict"`
	Matches []Match          `json:"matches"`
	Error   string           `json:"error,omitempty"`
}

// Commands exposes info (programs, rule files, versions) and
// scan_file PATH... (the matches per file), usable without a bounty.
func (Scanner) Commands() []psengine.Command {
	compiled := func(env psengine.Env) (*Compiled, error) {
		c, ok := CompiledOf(env)
		if !ok {
			return nil, fmt.Errorf("%w: no compiled rules", ErrConfig)
		}
		return c, nil
	}
	return []psengine.Command{
		{
			Name: "info",
			Help: "info: the yara programs, version, rule files and their digest",
			Run: func(_ context.Context, env psengine.Env, args []string) (any, error) {
				if len(args) != 0 {
					return nil, errors.New("info takes no arguments")
				}
				c, err := compiled(env)
				if err != nil {
					return nil, err
				}
				return Info{Yara: c.Yara, Yarac: c.Yarac, VendorVersion: c.YaraVersion, Rules: c.Rules,
					Files: c.Files, SignaturesVersion: c.Digest, NoMatch: string(c.NoMatch)}, nil
			},
		},
		{
			Name: "scan_file",
			Help: "scan_file PATH...: the rules matching each file, and the verdict",
			Run: func(ctx context.Context, env psengine.Env, args []string) (any, error) {
				if len(args) == 0 {
					return nil, errors.New("scan_file needs at least one PATH")
				}
				c, err := compiled(env)
				if err != nil {
					return nil, err
				}
				reports := make([]FileReport, 0, len(args))
				for _, path := range args {
					rep := FileReport{Path: path, Verdict: psengine.Unknown, Matches: []Match{}}
					if matches, err := c.ScanFile(ctx, path); err != nil {
						if ctx.Err() != nil {
							return nil, err
						}
						rep.Error = err.Error()
					} else {
						rep.Matches, rep.Verdict = matches, c.Classify(matches).Verdict
						if rep.Matches == nil {
							rep.Matches = []Match{}
						}
					}
					reports = append(reports, rep)
				}
				return reports, nil
			},
		},
	}
}
