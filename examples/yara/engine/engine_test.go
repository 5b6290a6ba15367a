package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/examples/yara/engine"
	"github.com/polyswarm/psengine/examples/yara/libyara"
	"github.com/polyswarm/psengine/psenginetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// needLibyara skips without libyara, or fails under CI=true.
func needLibyara(t testing.TB) {
	t.Helper()
	if !libyara.Available {
		if os.Getenv("CI") == "true" {
			t.Fatal("built without libyara (apt-get install libyara-dev; no -tags nolibyara)")
		}
		t.Skip("built without libyara (apt-get install libyara-dev)")
	}
}

// Rules written by the tests: one matches a marker of the tests' own, with
// tags and every kind of meta (an apostrophe too, which yara's command
// line printed in a form nothing could parse back); one matches a part of
// the EICAR string.
const markerRules = `
rule Ps_Marker : test demo
{
  meta:
    author = "psengine \"tests\""
    description = "the attacker's tool"
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
	Rule: "Ps_Marker", Tags: []string{"test", "demo"}, Score: 75,
	Meta: map[string]any{"author": `psengine "tests"`, "description": "the attacker's tool", "score": int64(75),
		"weight": int64(-2), "live": true, "note": "tab\there, é"},
}

func writeFile(t testing.TB, dir, name, content string) string {
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

// compile compiles s's rules, closed at the end of the test.
func compile(t testing.TB, s engine.Scanner) *engine.Compiled {
	t.Helper()
	c, err := s.Compile(context.Background(), psengine.Env{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestConformance(t *testing.T) {
	needLibyara(t)
	rules := writeFile(t, t.TempDir(), "rules.yar", markerRules+eicarRule)
	psenginetest.TestScanner(t, engine.Scanner{Rules: rules}, []psenginetest.Case{
		{Name: "marker", Data: []byte("xx PSENGINE-YARA-MARKER xx"), Want: psengine.Malicious},
		{Name: "eicar", Data: psenginetest.EICAR(), Want: psengine.Malicious},
		{Name: "no match", Data: []byte("nothing"), Want: psengine.Unknown},
		{Name: "url", URL: "http://example.invalid/PSENGINE-YARA-MARKER", Want: psengine.Unknown},
	}, psengine.WithDirs(envdirs.Dirs{Temp: t.TempDir()}))
}

func TestMatchAndNoMatch(t *testing.T) {
	needLibyara(t)
	rules := writeFile(t, t.TempDir(), "rules.yar", markerRules+eicarRule)
	e := newEngine(t, engine.Scanner{Rules: rules})

	res := psenginetest.Analyze(t, e, append([]byte("PSENGINE-YARA-MARKER and "), psenginetest.EICAR()...))
	a := res.Analysis
	if res.Err != nil || a.Verdict != psengine.Malicious || a.Metadata.MalwareFamily != "Ps_Marker" || a.Bid == 0 || a.Score != 75 {
		t.Fatalf("match: %+v (%v)", a, res.Err)
	}
	eicarMatch := engine.Match{Rule: "Eicar_Part", Tags: []string{}, Meta: map[string]any{}, Score: engine.DefaultScore}
	want := map[string]any{"yara": engine.Report{Count: 2, Rules: []engine.Match{markerMatch, eicarMatch}}}
	if diff := cmp.Diff(want, a.Metadata.Extra); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}
	if s := a.Metadata.Scanner; s.VendorVersion != libyara.Version() || len(s.SignaturesVersion) != 16 || a.Metadata.Product != "yara" {
		t.Errorf("head: %+v", a.Metadata)
	}
	// The apostrophe survives the whole way, to the answer's JSON.
	data, err := json.Marshal(res.Answer())
	if err != nil || !strings.Contains(string(data), `"description":"the attacker's tool"`) {
		t.Errorf("answer %s (%v): the apostrophe's meta is missing", data, err)
	}

	res = psenginetest.Analyze(t, e, []byte("nothing here"))
	if res.Err != nil || res.Analysis.Verdict != psengine.Unknown || res.Analysis.Bid != 0 || res.Analysis.Metadata.Extra != nil {
		t.Errorf("no match: %+v (%v), want unknown", res.Analysis, res.Err)
	}
}

func TestNoMatchBenign(t *testing.T) {
	needLibyara(t)
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
	needLibyara(t)
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
		if re.Rules != rules || !strings.Contains(err.Error(), broken+":8: ") || !strings.Contains(err.Error(), "unreferenced string") {
			t.Errorf("rules %s: the error does not name the broken file, line and reason: %v", rules, err)
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
	needLibyara(t)
	dir := t.TempDir()
	writeFile(t, dir, "a.yar", markerRules)
	writeFile(t, dir, "more/b.YARA", eicarRule)
	writeFile(t, dir, "notes.txt", "not rules { at all")
	c := compile(t, engine.Scanner{Rules: dir})
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
	c.Close()
	if _, err := c.ScanFile(context.Background(), sample); !errors.Is(err, engine.ErrRules) {
		t.Errorf("scan after Close: %v, want ErrRules", err)
	}
}

// Without YARA_RULES the rules are DATA/rules under the data directory.
func TestDefaultRulesUnderData(t *testing.T) {
	needLibyara(t)
	data := t.TempDir()
	writeFile(t, data, "rules/marker.yar", markerRules)
	e := newEngine(t, engine.Scanner{}, psengine.WithDirs(envdirs.Dirs{Data: data, Temp: t.TempDir()}))
	if res := psenginetest.Analyze(t, e, []byte("PSENGINE-YARA-MARKER")); res.Analysis.Verdict != psengine.Malicious {
		t.Errorf("default rules: %+v (%v)", res.Analysis, res.Err)
	}
}

func TestBadSettings(t *testing.T) {
	needLibyara(t)
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
		{"bad externals", engine.Scanner{Rules: rules, Externals: "x="}, envdirs.Dirs{}, nil},
		{"malformed externals", engine.Scanner{Rules: rules, Externals: "1x=2"}, envdirs.Dirs{}, engine.ErrConfig},
		{"a file external", engine.Scanner{Rules: rules, Externals: "filename=a.exe"}, envdirs.Dirs{}, engine.ErrConfig},
	} {
		c, err := tc.s.Compile(context.Background(), psengine.Env{}.WithDirs(tc.dirs))
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if c != nil {
			c.Close()
		}
	}
}

// Rules using the file externals and YARA_EXTERNALS compile and match by
// the artifact's own values.
func TestExternals(t *testing.T) {
	needLibyara(t)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	rules := writeFile(t, t.TempDir(), "ext.yar", fmt.Sprintf(`
rule Exe_Name { condition: extension == ".exe" and filename == "Setup.EXE" and filepath endswith "/dir/Setup.EXE" }
rule Pe_Type { condition: filetype == "EXE" }
rule Elf_Type { condition: filetype == "ELF" }
rule Mine { condition: owner == %q }
rule Settings { condition: env == "prod, eu" and max_size > 1000 and ratio < 1.0 and strict }
rule Off { condition: not strict }
`, me.Username))
	e := newEngine(t, engine.Scanner{Rules: rules, Externals: `env="prod, eu", max_size=0x1000` + "\n" + `ratio=0.5, strict=true`})
	ctx := context.Background()
	pe := writeFile(t, t.TempDir(), "dir/Setup.EXE", "MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"+strings.Repeat("\x00", 100))
	res, err := e.Analyze(ctx, pe)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"Exe_Name", "Pe_Type", "Mine", "Settings"}, ruleNames(t, res.Analysis)); diff != "" {
		t.Errorf("a local PE named Setup.EXE (-want +got):\n%s", diff)
	}
	// The scan_file command: the same externals from the path.
	out, err := e.Command(ctx, "scan_file", []string{pe})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range out.([]engine.FileReport)[0].Matches {
		names = append(names, m.Rule)
	}
	if diff := cmp.Diff([]string{"Exe_Name", "Pe_Type", "Mine", "Settings"}, names); diff != "" {
		t.Errorf("scan_file of a local PE named Setup.EXE (-want +got):\n%s", diff)
	}
	// In memory (a data: URI): no name, no owner; the type from the content.
	res, err = e.Analyze(ctx, psenginetest.DataURI([]byte("\x7fELF\x02\x01\x01\x00"+strings.Repeat("\x00", 60))))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"Elf_Type", "Settings"}, ruleNames(t, res.Analysis)); diff != "" {
		t.Errorf("an ELF in a data: URI (-want +got):\n%s", diff)
	}
}

func ruleNames(t *testing.T, a psengine.Analysis) []string {
	t.Helper()
	rep, ok := a.Metadata.Extra["yara"].(engine.Report)
	if !ok {
		t.Fatalf("no report in %+v", a)
	}
	var out []string
	for _, m := range rep.Rules {
		out = append(out, m.Rule)
	}
	return out
}

// The verdict policy: informational tags and names never make a verdict,
// a score meta sets the score, low scores are informational, middle ones
// suspicious.
func TestPolicy(t *testing.T) {
	needLibyara(t)
	rules := writeFile(t, t.TempDir(), "policy.yar", `
rule IsELF : PECheck { condition: uint32(0) == 0x464c457f }
rule HasNotes : info { strings: $n = "NOTE" condition: $n }
rule Custom_Info { strings: $c = "CUSTOM" condition: $c }
rule Low { meta: score = 20 strings: $l = "LOW" condition: $l }
rule Middle { meta: score = "55" strings: $m = "MIDDLE" condition: $m }
rule High { meta: score = 90 strings: $h = "HIGH" condition: $h }
rule Default_Score { meta: score = 900 strings: $d = "DEFAULT" condition: $d }
`)
	elf := "\x7fELF\x02\x01\x01\x00" + strings.Repeat("\x00", 60)
	for _, tc := range []struct {
		name, data, infoTags string
		noMatch              psengine.Verdict
		verdict              psengine.Verdict
		family               string
		score                float64
	}{
		{"informational only", elf + "NOTE LOW", "", "", psengine.Unknown, "", 0},
		{"informational only, benign no-match", elf + "NOTE", "", psengine.Benign, psengine.Benign, "", 0},
		{"a custom informational name", "CUSTOM", "custom_info", "", psengine.Unknown, "", 0},
		{"not informational by default", "CUSTOM", "", "", psengine.Malicious, "Custom_Info", engine.DefaultScore},
		{"a score as a string, suspicious", elf + "MIDDLE", "", "", psengine.Suspicious, "Middle", 55},
		{"the best score wins", "MIDDLE HIGH DEFAULT " + elf, "", "", psengine.Malicious, "High", 90},
		{"an out-of-range score is the default", "DEFAULT", "", "", psengine.Malicious, "Default_Score", engine.DefaultScore},
	} {
		var info []string
		if tc.infoTags != "" {
			info = strings.Split(tc.infoTags, ",")
		}
		c := compile(t, engine.Scanner{Rules: rules, InfoTags: info, NoMatch: tc.noMatch})
		matches, err := c.ScanArtifact(context.Background(), psenginetest.Artifact(t, []byte(tc.data)))
		if err != nil {
			t.Fatal(err)
		}
		a := c.Policy.Classify(matches)
		if a.Verdict != tc.verdict || a.Metadata.MalwareFamily != tc.family || a.Score != tc.score {
			t.Errorf("%s: %s %q score %v, want %s %q score %v", tc.name, a.Verdict, a.Metadata.MalwareFamily, a.Score, tc.verdict, tc.family, tc.score)
		}
		rep := a.Metadata.Extra["yara"].(engine.Report)
		if rep.Count != len(matches) || len(rep.Rules) != len(matches) {
			t.Errorf("%s: report %+v of %d matches", tc.name, rep, len(matches))
		}
		for i, m := range rep.Rules {
			if i > 0 && !rep.Rules[i-1].Info && !m.Info && rep.Rules[i-1].Score < m.Score {
				t.Errorf("%s: report not by score: %+v", tc.name, rep.Rules)
			}
			if i > 0 && rep.Rules[i-1].Info && !m.Info {
				t.Errorf("%s: a detection after an informational match: %+v", tc.name, rep.Rules)
			}
		}
	}
}

// 500 matching rules with large metas: the answer is trimmed to the best
// matches that fit, keeps the whole count, and is a valid answer under
// 64 KiB.
func TestTrimmedReport(t *testing.T) {
	needLibyara(t)
	var src strings.Builder
	for i := range 500 {
		fmt.Fprintf(&src, "rule Many_%03d : tag_a tag_b { meta: score = %d description = %q ref = %q strings: $m = \"MANY-MARKER\" condition: $m }\n",
			i, 40+i%60, strings.Repeat("d", 300), strings.Repeat("r", 2000))
	}
	rules := writeFile(t, t.TempDir(), "many.yar", src.String())
	e := newEngine(t, engine.Scanner{Rules: rules})
	res := psenginetest.Analyze(t, e, []byte("xx MANY-MARKER xx"))
	if res.Err != nil || res.Analysis.Verdict != psengine.Malicious || res.Analysis.Score != 99 {
		t.Fatalf("%+v (%v)", res.Analysis, res.Err)
	}
	if err := psengine.Validate(res.Bounty, res.Analysis); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(res.Answer())
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > psengine.MaxAnswerSize {
		t.Fatalf("answer of %d bytes", len(data))
	}
	rep := res.Analysis.Metadata.Extra["yara"].(engine.Report)
	if rep.Count != 500 || !rep.Truncated || len(rep.Rules) < 20 || len(rep.Rules) >= 500 {
		t.Fatalf("report: count %d, %d shown, truncated %v", rep.Count, len(rep.Rules), rep.Truncated)
	}
	for i, m := range rep.Rules {
		if m.Score != 99-i/8 || len(m.Meta["ref"].(string)) > 512 {
			t.Fatalf("shown match %d: %s score %d, ref of %d bytes; want the best first", i, m.Rule, m.Score, len(m.Meta["ref"].(string)))
		}
	}
	t.Logf("answer %d bytes: %d of %d matches shown", len(data), len(rep.Rules), rep.Count)
}

// A scan past its deadline ends with libyara's timeout.
func TestScanTimeout(t *testing.T) {
	needLibyara(t)
	rules := writeFile(t, t.TempDir(), "slow.yar", `rule Slow { condition: for all i in (0..9223372036854775806) : (uint8(i % filesize) < 0x100) }`)
	c := compile(t, engine.Scanner{Rules: rules})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.ScanArtifact(ctx, psenginetest.Artifact(t, []byte("some data")))
	if !errors.Is(err, engine.ErrScan) || !errors.Is(err, libyara.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a scan past its deadline: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("returned after %v", d)
	}
}

// Scans run at once on one rule set (a scanner each) while it is closed:
// each scan answers or fails with ErrRules, and the rules are freed once
// the last scan returned.
func TestConcurrentScansAndClose(t *testing.T) {
	needLibyara(t)
	rules := writeFile(t, t.TempDir(), "rules.yar", markerRules+eicarRule)
	c, err := engine.Scanner{Rules: rules}.Compile(context.Background(), psengine.Env{})
	if err != nil {
		t.Fatal(err)
	}
	a := psenginetest.Artifact(t, []byte("PSENGINE-YARA-MARKER"))
	var wg sync.WaitGroup
	var scans atomic.Int64
	for range 4 {
		wg.Go(func() {
			for {
				m, err := c.ScanArtifact(context.Background(), a)
				scans.Add(1)
				if err != nil {
					if !errors.Is(err, engine.ErrRules) {
						t.Error(err)
					}
					return
				}
				if len(m) != 1 {
					t.Errorf("matches %+v", m)
					return
				}
			}
		})
	}
	psenginetest.Eventually(t, "scans under way", func() bool { return scans.Load() > 100 })
	c.Close()
	wg.Wait()
	if err := (engine.Scanner{}).CheckHealth(context.Background(), psengine.Env{}); err == nil {
		t.Error("an Env without rules is healthy")
	}
}

func TestScanWithoutSetup(t *testing.T) {
	a := psenginetest.Artifact(t, []byte("x"))
	if _, err := (engine.Scanner{}).Scan(context.Background(), psengine.Env{}, a); !errors.Is(err, engine.ErrConfig) {
		t.Errorf("Scan without setup: %v, want ErrConfig", err)
	}
}

func TestCommands(t *testing.T) {
	needLibyara(t)
	dir := t.TempDir()
	rules := writeFile(t, dir, "rules.yar", "include \"inc/eicar.yar\"\n"+markerRules)
	inc := writeFile(t, dir, "inc/eicar.yar", eicarRule)
	e := newEngine(t, engine.Scanner{Rules: rules, Externals: "env=prod"})
	ctx := context.Background()
	out, err := e.Command(ctx, "info", nil)
	if err != nil {
		t.Fatal(err)
	}
	info := out.(engine.Info)
	if info.Rules != rules || !cmp.Equal(info.Files, []string{rules}) || !cmp.Equal(info.Includes, []string{inc}) ||
		info.VendorVersion != libyara.Version() || info.NoMatch != "unknown" || info.RuleCount != 2 ||
		info.Externals["env"] != "prod" || len(info.SignaturesVersion) != 16 {
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
