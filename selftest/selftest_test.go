package selftest_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/selftest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParse(t *testing.T) {
	manifest := `# a comment
eicar.com            malicious      EICAR*   # trailing comment

docs/readme.txt      BENIGN
"with space.txt"     any-detection
./x/../dropper.bin   any-detection  Trojan.[AB]?
`
	got, err := selftest.Parse(strings.NewReader(manifest))
	if err != nil {
		t.Fatal(err)
	}
	want := []selftest.Entry{
		{Path: "eicar.com", Expect: selftest.Malicious, Family: "EICAR*", Line: 2},
		{Path: "docs/readme.txt", Expect: selftest.Benign, Line: 4},
		{Path: "with space.txt", Expect: selftest.AnyDetection, Line: 5},
		{Path: "dropper.bin", Expect: selftest.AnyDetection, Family: "Trojan.[AB]?", Line: 6},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
}

// Every bad line is reported at once, with its number.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ manifest, want string }{
		{"", "no files listed"},
		{"# only comments\n\n", "no files listed"},
		{"a.bin\n", "line 1: want PATH EXPECT [FAMILY], got 1 fields"},
		{"a.bin malicious Fam extra\n", "got 4 fields"},
		{"a.bin clean\n", `"clean": want malicious, any-detection or benign`},
		{"../a.bin benign\n", "want a slash-separated path inside the corpus directory"},
		{"/etc/passwd benign\n", "inside the corpus directory"},
		{"a\\b benign\n", "inside the corpus directory"},
		{"a.bin benign Fam\n", "a family applies to malicious and any-detection only"},
		{"a.bin malicious [x\n", "syntax error in pattern"},
		{"\"a.bin benign\n", "a quoted field"},
		{"\"a\"b benign\n", "want whitespace after the closing quote"},
		{"a.bin benign\n./a.bin malicious\n", "line 2: a.bin is listed already (line 1)"},
		{"a.bin clean\nb.bin benign\nc.bin nope\n", "line 3"},
	} {
		_, err := selftest.Parse(strings.NewReader(tc.manifest))
		if !errors.Is(err, selftest.ErrManifest) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q): %v, want ErrManifest saying %q", tc.manifest, err, tc.want)
		}
	}
}

// A manifest is the operator's file, yet fuzzed like any parser: an
// entry or an error, never a panic, and what parses is within the corpus.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"eicar.com malicious EICAR*\n", "\"a b\" benign # c\n", "`raw` any-detection [a-z]*\n",
		"a\x00b benign\n", "../x benign\n", strings.Repeat("x", 70000) + " benign\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := selftest.Parse(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, selftest.ErrManifest) {
				t.Fatalf("error %v does not wrap ErrManifest", err)
			}
			return
		}
		for _, e := range entries {
			if !filepath.IsLocal(filepath.FromSlash(e.Path)) {
				t.Errorf("entry outside the corpus: %+v", e)
			}
		}
	})
}

// corpusDir writes files and a manifest into a temp dir.
func corpusDir(t *testing.T, manifest string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, selftest.ManifestFile), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadChecksFiles(t *testing.T) {
	dir := corpusDir(t, "a.bin benign\nmissing.bin malicious\nsub benign\n", map[string]string{"a.bin": "a", "sub/x": "x"})
	_, err := selftest.Load(dir)
	if !errors.Is(err, selftest.ErrManifest) || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "line 3: sub is not a regular file") {
		t.Errorf("Load: %v", err)
	}
	if _, err := selftest.Load(t.TempDir()); !errors.Is(err, selftest.ErrManifest) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a directory without a manifest: %v", err)
	}
}

// scanByContent answers by the file's content: "MAL:Family", "SUS:Family",
// "ERR", else benign (or unknown for "UNK"). It checks the artifact is the
// corpus file.
func scanByContent(t *testing.T, dir string) psengine.CandidateScan {
	return func(_ context.Context, a psengine.Artifact) (psengine.Analysis, error) {
		if !strings.HasPrefix(a.URI, dir+string(filepath.Separator)) || a.Type != psengine.FileArtifact {
			t.Errorf("artifact %+v is not a corpus file", a)
		}
		if p, ok := a.File(); !ok || p != a.URI {
			t.Errorf("artifact %s is not the file itself (%q)", a.URI, p)
		}
		data, err := a.Bytes()
		if err != nil {
			return psengine.Analysis{}, err
		}
		s := string(data)
		switch {
		case s == "ERR":
			return psengine.Analysis{}, errors.New("rules broken")
		case s == "UNK":
			return psengine.Analysis{Verdict: psengine.Unknown}, nil
		case strings.HasPrefix(s, "MAL:"):
			return psengine.Analysis{Verdict: psengine.Malicious, Metadata: psengine.Metadata{MalwareFamily: s[4:]}}, nil
		case strings.HasPrefix(s, "SUS:"):
			return psengine.Analysis{Verdict: psengine.Suspicious, Metadata: psengine.Metadata{MalwareFamily: s[4:]}}, nil
		}
		return psengine.Analysis{Verdict: psengine.Benign}, nil
	}
}

func TestCheck(t *testing.T) {
	manifest := `
mal-ok          malicious      EICAR*
mal-lost        malicious
mal-family      malicious      EICAR*
mal-sus         malicious
any-sus         any-detection  Gen.*
any-lost        any-detection
benign-ok       benign
benign-unknown  benign
benign-fp       benign
broken          benign
`
	dir := corpusDir(t, manifest, map[string]string{
		"mal-ok": "MAL:EICAR-Test-File", "mal-lost": "clean", "mal-family": "MAL:Other", "mal-sus": "SUS:X",
		"any-sus": "SUS:Gen.Heur", "any-lost": "UNK", "benign-ok": "clean", "benign-unknown": "UNK",
		"benign-fp": "MAL:FalsePositive", "broken": "ERR",
	})
	c, err := selftest.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Check(context.Background(), scanByContent(t, dir))
	f, ok := errors.AsType[*selftest.Failure](err)
	if !ok || !errors.Is(err, selftest.ErrRegression) {
		t.Fatalf("Check: %v, want a *Failure", err)
	}
	var failed []string
	for _, o := range f.Files {
		failed = append(failed, o.Path)
	}
	want := []string{"mal-lost", "mal-family", "mal-sus", "any-lost", "benign-fp", "broken"}
	if !cmp.Equal(failed, want) || f.Checked != 10 || len(out) != 10 {
		t.Errorf("failed %v of %d (%d outcomes), want %v of 10", failed, f.Checked, len(out), want)
	}
	msg := err.Error()
	for _, s := range []string{
		"6 of 10 files fail",
		`mal-lost: detection lost: want malicious, got benign`,
		`mal-family: detection lost: want malicious "EICAR*", got malicious "Other"`,
		`benign-fp: a new detection on a benign file: got malicious "FalsePositive"`,
		`broken: the scan failed: rules broken`,
	} {
		if !strings.Contains(msg, s) {
			t.Errorf("the error does not say %q:\n%s", s, msg)
		}
	}
}

// A cancelled check is not a failure of the definitions.
func TestCheckCancelled(t *testing.T) {
	dir := corpusDir(t, "a benign\nb benign\n", map[string]string{"a": "x", "b": "y"})
	c, err := selftest.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	_, err = c.Check(ctx, func(context.Context, psengine.Artifact) (psengine.Analysis, error) {
		cancel()
		return psengine.Analysis{Verdict: psengine.Malicious}, nil
	})
	if !errors.Is(err, context.Canceled) || errors.Is(err, selftest.ErrRegression) {
		t.Errorf("Check cancelled: %v", err)
	}
}

var defsKey = psengine.NewKey[string]("selftest.defs")

// defs is a scanner whose definitions are a set of detected contents in
// the Env (its version their name): Update moves to next.
type defs struct {
	next  atomic.Value // string
	setup atomic.Int32 // worker setups
	down  atomic.Int32 // worker teardowns
}

func (d *defs) SetupEngine(_ context.Context, env psengine.Env) (psengine.Env, error) {
	return defsKey.With(env, "good"), nil
}

func (d *defs) Update(_ context.Context, env psengine.Env) (psengine.Env, error) {
	return defsKey.With(env, d.next.Load().(string)), nil
}

func (d *defs) Describe(_ context.Context, env psengine.Env) (psengine.Metadata, error) {
	return psengine.Metadata{Scanner: psengine.ScannerInfo{SignaturesVersion: defsKey.Must(env)}}, nil
}

func (d *defs) SetupWorker(_ context.Context, env psengine.Env) (psengine.Env, error) {
	d.setup.Add(1)
	return env, nil
}

func (d *defs) TeardownWorker(context.Context, psengine.Env) error { d.down.Add(1); return nil }

// Scan: "good" detects MARKER; "lossy" detects nothing; "noisy" detects
// everything; "broken" fails.
func (d *defs) Scan(_ context.Context, env psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	data, _ := a.Bytes()
	switch defsKey.Must(env) {
	case "broken":
		return psengine.Analysis{}, errors.New("definitions do not load")
	case "noisy":
		return psengine.Analysis{Verdict: psengine.Malicious, Metadata: psengine.Metadata{MalwareFamily: "Noise"}}, nil
	case "lossy":
		return psengine.Analysis{Verdict: psengine.Unknown}, nil
	}
	if bytes.Contains(data, []byte("MARKER")) {
		return psengine.Analysis{Verdict: psengine.Malicious, Metadata: psengine.Metadata{MalwareFamily: "Marker"}}, nil
	}
	return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.2}, nil
}

// Through the engine: an update that loses a detection, one that adds a
// detection on a benign file and a broken one are refused, naming the
// files, and the good definitions keep serving; a good one is promoted.
// The corpus is scanned with the candidate, on a worker Env of its own.
func TestEngineRefusesRegressions(t *testing.T) {
	dir := corpusDir(t, "sample.bin malicious Marker\nclean.txt benign\n",
		map[string]string{"sample.bin": "xx MARKER xx", "clean.txt": "hello"})
	c, err := selftest.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	d := &defs{}
	home := t.TempDir()
	e := psengine.New(d, psengine.WithDirs(envdirs.Dirs{Home: home, Temp: home}), psengine.WithSelfTest(c.Test))
	ctx := context.Background()
	t.Cleanup(func() { _ = e.Shutdown(ctx) })
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	serving := func(want string) {
		t.Helper()
		res, err := e.Analyze(ctx, filepath.Join(dir, "sample.bin"))
		if err != nil || res.Analysis.Verdict != psengine.Malicious || res.Analysis.Metadata.Scanner.SignaturesVersion != want {
			t.Fatalf("serving: %s by %q (%v), want malicious by %q", res.Analysis.Verdict, res.Analysis.Metadata.Scanner.SignaturesVersion, err, want)
		}
	}
	for _, tc := range []struct{ defs, want string }{
		{"lossy", `sample.bin: detection lost: want malicious "Marker", got unknown`},
		{"noisy", `clean.txt: a new detection on a benign file: got malicious "Noise"`},
		{"broken", "sample.bin: the scan failed: definitions do not load"},
	} {
		d.next.Store(tc.defs)
		err := e.Update(ctx)
		if !errors.Is(err, selftest.ErrRegression) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("update to %s: %v, want a regression saying %q", tc.defs, err, tc.want)
		}
		serving("good")
	}
	if s, down := d.setup.Load(), d.down.Load(); s < 3 || down != s-1 { // the serving worker is still up
		t.Errorf("%d self-test worker setups, %d teardowns", s, down)
	}
	d.next.Store("good-too")
	if err := e.Update(ctx); err != nil {
		t.Fatalf("a good update: %v", err)
	}
	serving("good-too")
}
