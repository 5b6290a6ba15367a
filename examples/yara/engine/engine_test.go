package engine_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/examples/yara/engine"
	"github.com/polyswarm/psengine/psenginetest"
	"github.com/polyswarm/psengine/winex"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// needYara skips without yara and yarac, or fails under CI=true.
func needYara(t *testing.T) {
	t.Helper()
	for _, p := range []string{"yara", "yarac"} {
		if _, err := exec.LookPath(p); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not installed (apt-get install yara): %v", p, err)
			}
			t.Skipf("%s not installed (apt-get install yara): %v", p, err)
		}
	}
}

// Rules written by the tests: one matches a marker of the tests' own, with
// tags and every kind of meta; one matches a part of the EICAR string.
const markerRules = `
rule Ps_Marker : test demo
{
  meta:
    author = "psengine \"tests\""
    score = 75
    weight = -2
    live = true
    note = "tab\there, é"
  strings:
    $m = "PSENGINE-YARA-MARKER"
  condition:
    $m
}
`

const eicarRule = `
rule Eicar_Part
{
  strings:
    $e = "EICAR-STANDARD-ANTIVIRUS"
  condition:
    $e
}
`

const brokenRule = `
rule Broken
{
  strings:
    $unused = "never referenced"
  condition:
    true
}
`

var markerMatch = engine.Match{
	Rule: "Ps_Marker", Tags: []string{"test", "demo"},
	Meta: map[string]any{"author": `psengine "tests"`, "score": int64(75), "weight": int64(-2), "live": true, "note": "tab\there, é"},
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func newEngine(t *testing.T, s engine.Scanner, opts ...psengine.Option) *psengine.Engine {
	t.Helper()
	return psenginetest.Engine(t, s, append([]psengine.Option{psengine.WithName("yara"), psengine.WithDirs(envdirs.Dirs{Temp: t.TempDir(), TempPrefix: "yara-"})}, opts...)...)
}

func TestConformance(t *testing.T) {
	needYara(t)
	rules := writeFile(t, t.TempDir(), "rules.yar", markerRules+eicarRule)
	psenginetest.TestScanner(t, engine.Scanner{Rules: rules}, []psenginetest.Case{
		{Name: "marker", Data: []byte("xx PSENGINE-YARA-MARKER xx"), Want: psengine.Malicious},
		{Name: "eicar", Data: psenginetest.EICAR(), Want: psengine.Malicious},
		{Name: "no match", Data: []byte("nothing"), Want: psengine.Unknown},
		{Name: "url", URL: "http://example.invalid/PSENGINE-YARA-MARKER", Want: psengine.Unknown},
	}, psengine.WithDirs(envdirs.Dirs{Temp: t.TempDir()}))
}

func TestMatchAndNoMatch(t *testing.T) {
	needYara(t)
	rules := writeFile(t, t.TempDir(), "rules.yar", markerRules+eicarRule)
	e := newEngine(t, engine.Scanner{Rules: rules})

	res := psenginetest.Analyze(t, e, append([]byte("PSENGINE-YARA-MARKER and "), psenginetest.EICAR()...))
	a := res.Analysis
	if res.Err != nil || a.Verdict != psengine.Malicious || a.Metadata.MalwareFamily != "Ps_Marker" || a.Bid == 0 || a.Confidence != engine.MatchConfidence {
		t.Fatalf("match: %+v (%v)", a, res.Err)
	}
	eicarMatch := map[string]any{"name": "Eicar_Part", "tags": []string{}, "meta": map[string]any{}}
	wantExtra := map[string]any{"yara": map[string]any{"rules": []any{
		map[string]any{"name": markerMatch.Rule, "tags": markerMatch.Tags, "meta": markerMatch.Meta},
		eicarMatch,
	}}}
	if diff := cmp.Diff(wantExtra, a.Metadata.Extra); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}
	if s := a.Metadata.Scanner; s.VendorVersion == "" || len(s.SignaturesVersion) != 16 || a.Metadata.Product != "yara" {
		t.Errorf("head: %+v", a.Metadata)
	}

	res = psenginetest.Analyze(t, e, []byte("nothing here"))
	if res.Err != nil || res.Analysis.Verdict != psengine.Unknown || res.Analysis.Bid != 0 {
		t.Errorf("no match: %+v (%v), want unknown", res.Analysis, res.Err)
	}
}

func TestNoMatchBenign(t *testing.T) {
	needYara(t)
	rules := writeFile(t, t.TempDir(), "rules.yar", markerRules)
	e := newEngine(t, engine.Scanner{Rules: rules, NoMatch: psengine.Benign})
	res := psenginetest.Analyze(t, e, []byte("nothing here"))
	if res.Err != nil || res.Analysis.Verdict != psengine.Benign || res.Analysis.Confidence != engine.NoMatchConfidence || res.Analysis.Bid == 0 {
		t.Errorf("no match with NoMatch benign: %+v (%v)", res.Analysis, res.Err)
	}
	if m := psenginetest.Analyze(t, e, []byte("PSENGINE-YARA-MARKER")).Analysis; m.Bid <= res.Analysis.Bid {
		t.Errorf("a match bids %d, no more than a benign no-match (%d)", m.Bid, res.Analysis.Bid)
	}
}

func TestBrokenRulesStopStart(t *testing.T) {
	needYara(t)
	dir := t.TempDir()
	writeFile(t, dir, "good.yar", markerRules)
	broken := writeFile(t, dir, "sub/broken.yara", brokenRule)
	for _, rules := range []string{broken, dir} {
		tmp := t.TempDir()
		e := newEngine(t, engine.Scanner{Rules: rules}, psengine.WithDirs(envdirs.Dirs{Temp: tmp, TempPrefix: "yara-"}))
		err := e.Start(context.Background())
		var re *engine.RulesError
		if !errors.As(err, &re) || !errors.Is(err, engine.ErrRules) || !errors.Is(err, psengine.ErrSetup) {
			t.Fatalf("rules %s: Start = %v, want a *RulesError", rules, err)
		}
		if re.Rules != rules || !strings.Contains(err.Error(), broken) || !strings.Contains(err.Error(), "unreferenced string") {
			t.Errorf("rules %s: the error does not name the broken file and the reason: %v", rules, err)
		}
		// The bounties are not answered by an engine that did not start.
		if res, _ := e.Analyze(context.Background(), psenginetest.DataURI([]byte("x"))); res.Answered {
			t.Errorf("answered by an engine whose setup failed: %+v", res.Analysis)
		}
		if left, _ := os.ReadDir(tmp); len(left) != 0 {
			t.Errorf("rules %s: %d entries left in the temp dir after the failed compile", rules, len(left))
		}
	}
}

func TestRulesDirectory(t *testing.T) {
	needYara(t)
	dir := t.TempDir()
	writeFile(t, dir, "a.yar", markerRules)
	writeFile(t, dir, "more/b.YARA", eicarRule)
	writeFile(t, dir, "notes.txt", "not rules { at all")
	c, err := engine.Scanner{Rules: dir}.Compile(context.Background(), psengine.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove()
	want := []string{filepath.Join(dir, "a.yar"), filepath.Join(dir, "more/b.YARA")}
	if diff := cmp.Diff(want, c.Files); diff != "" {
		t.Errorf("rule files (-want +got):\n%s", diff)
	}
	sample := psenginetest.File(t, "sample", append([]byte("PSENGINE-YARA-MARKER "), psenginetest.EICAR()...))
	got, err := c.ScanFile(context.Background(), sample)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Rule != "Ps_Marker" || got[1].Rule != "Eicar_Part" {
		t.Errorf("matches: %+v", got)
	}
	if err := c.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("compiled rules still there after Remove: %v", err)
	}
}

// Without YARA_RULES the rules are DATA/rules under the data directory.
func TestDefaultRulesUnderData(t *testing.T) {
	needYara(t)
	data := t.TempDir()
	writeFile(t, data, "rules/marker.yar", markerRules)
	e := newEngine(t, engine.Scanner{}, psengine.WithDirs(envdirs.Dirs{Data: data, Temp: t.TempDir()}))
	if res := psenginetest.Analyze(t, e, []byte("PSENGINE-YARA-MARKER")); res.Analysis.Verdict != psengine.Malicious {
		t.Errorf("default rules: %+v (%v)", res.Analysis, res.Err)
	}
}

func TestBadSettings(t *testing.T) {
	needYara(t)
	dir := t.TempDir()
	rules := writeFile(t, dir, "r.yar", markerRules)
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		s    engine.Scanner
		dirs envdirs.Dirs
		want error
	}{
		{"missing rules", engine.Scanner{Rules: filepath.Join(dir, "none.yar")}, envdirs.Dirs{}, engine.ErrRules},
		{"empty directory", engine.Scanner{Rules: empty}, envdirs.Dirs{}, engine.ErrRules},
		{"no rules, no data dir", engine.Scanner{}, envdirs.Dirs{}, engine.ErrRules},
		{"no default rules", engine.Scanner{}, envdirs.Dirs{Data: dir}, engine.ErrRules},
		{"bad NoMatch", engine.Scanner{Rules: rules, NoMatch: "suspicious"}, envdirs.Dirs{}, engine.ErrConfig},
		{"missing yara", engine.Scanner{Rules: rules, Yara: filepath.Join(dir, "no-yara")}, envdirs.Dirs{}, engine.ErrProgram},
	} {
		c, err := tc.s.Compile(context.Background(), psengine.Env{}.WithDirs(tc.dirs))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if c != nil {
			c.Remove()
		}
	}
}

// fakeYara writes a script standing in for yara: it answers --version and
// then does what body says.
func fakeYara(t *testing.T, body string) string {
	t.Helper()
	return writeExecutable(t, "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 4.2.3; exit 0; fi\n"+body+"\n")
}

func writeExecutable(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "yara")
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func compileWith(t *testing.T, yara string) psengine.Env {
	t.Helper()
	rules := writeFile(t, t.TempDir(), "r.yar", markerRules)
	s := engine.Scanner{Rules: rules, Yara: yara, Yarac: "yarac"}
	env, err := s.SetupEngine(context.Background(), psengine.Env{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.TeardownEngine(context.Background(), env) })
	return env
}

// yara's exit status does not say match or no match; output that is not
// yara's, or a failing yara, is an error (answered unknown by the engine).
func TestYaraOutputAndErrors(t *testing.T) {
	needYara(t)
	a := psenginetest.Artifact(t, []byte("PSENGINE-YARA-MARKER"))
	for _, tc := range []struct {
		name, body string
		want       error
	}{
		{"garbage on exit 0", "echo 'this is not yara'", engine.ErrOutput},
		{"error exit", "echo 'error scanning x: could not open file' >&2; exit 1", engine.ErrScan},
	} {
		env := compileWith(t, fakeYara(t, tc.body))
		if got, err := (engine.Scanner{}).Scan(context.Background(), env, a); !errors.Is(err, tc.want) {
			t.Errorf("%s: %+v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	if _, err := (engine.Scanner{}).Scan(context.Background(), psengine.Env{}, a); !errors.Is(err, engine.ErrConfig) {
		t.Errorf("Scan without setup: %v, want ErrConfig", err)
	}
}

// A yara that hangs is killed at the scan's deadline.
func TestHungYaraKilled(t *testing.T) {
	needYara(t)
	env := compileWith(t, fakeYara(t, "exec sleep 600"))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := (engine.Scanner{}).Scan(ctx, env, psenginetest.Artifact(t, []byte("x")))
	if !errors.Is(err, winex.ErrKilled) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hung yara: %v, want ErrKilled and DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("returned %v after the deadline", d)
	}
}

func TestCommands(t *testing.T) {
	needYara(t)
	rules := writeFile(t, t.TempDir(), "rules.yar", markerRules)
	e := newEngine(t, engine.Scanner{Rules: rules})
	ctx := context.Background()
	out, err := e.Command(ctx, "info", nil)
	if err != nil {
		t.Fatal(err)
	}
	info := out.(engine.Info)
	if info.Rules != rules || !cmp.Equal(info.Files, []string{rules}) || info.VendorVersion == "" || info.NoMatch != "unknown" {
		t.Errorf("info = %+v", info)
	}
	hit := psenginetest.File(t, "hit", []byte("PSENGINE-YARA-MARKER"))
	miss := psenginetest.File(t, "miss", []byte("nothing"))
	out, err = e.Command(ctx, "scan_file", []string{hit, miss, miss + ".missing"})
	if err != nil {
		t.Fatal(err)
	}
	reports := out.([]engine.FileReport)
	if len(reports) != 3 || !strings.Contains(reports[2].Error, "could not open") {
		t.Fatalf("scan_file: %+v", reports)
	}
	reports[2].Error = ""
	want := []engine.FileReport{
		{Path: hit, Verdict: psengine.Malicious, Matches: []engine.Match{markerMatch}},
		{Path: miss, Verdict: psengine.Unknown, Matches: []engine.Match{}},
		{Path: miss + ".missing", Verdict: psengine.Unknown, Matches: []engine.Match{}},
	}
	if diff := cmp.Diff(want, reports); diff != "" {
		t.Errorf("scan_file (-want +got):\n%s", diff)
	}
}
