package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/cli/runrecord"
)

// ruled answers by markers in the content, under rules of version 1 or
// 2: the change from 1 to 2 loses "lose", detects "gain", renames the
// family of "rename" and lowers the confidence of "doubt".
func ruled(version int) psengine.Scanner {
	return psengine.ScannerFunc(func(_ context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
		b, err := a.Bytes()
		if err != nil {
			return psengine.Analysis{}, err
		}
		s := string(b)
		mal := func(family string, conf float64) (psengine.Analysis, error) {
			return psengine.Analysis{Verdict: psengine.Malicious, Confidence: conf, Metadata: psengine.Metadata{MalwareFamily: family}}, nil
		}
		switch {
		case strings.Contains(s, "lose") && version == 1, strings.Contains(s, "gain") && version == 2, strings.Contains(s, "keep"):
			return mal("Fam.Kept", 0.9)
		case strings.Contains(s, "rename"):
			return mal(map[int]string{1: "Fam.Old", 2: "Fam.New"}[version], 0.9)
		case strings.Contains(s, "doubt"):
			return mal("Fam.Doubt", map[int]float64{1: 0.9, 2: 0.6}[version])
		case strings.Contains(s, "wobble"): // moves less than the threshold
			return mal("Fam.Wobble", map[int]float64{1: 0.9, 2: 0.8}[version])
		}
		return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.2}, nil
	})
}

// recordRun runs analyze --record over dir with the rules of version and
// returns the record's path.
func recordRun(t *testing.T, version int, dir string) string {
	t.Helper()
	p, _, stderr := testProgram(t, ruled(version))
	rec := filepath.Join(t.TempDir(), "run.json")
	if code := p.Run(t.Context(), []string{"analyze", "--record", rec, dir}); code != 0 {
		t.Fatalf("analyze: exit %d\n%s", code, stderr)
	}
	return rec
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// Two runs before and after a rule change: diff lists exactly the files
// whose answer changed, by kind, and exits 1 for the lost detection; its
// JSON says the same; its page is written.
func TestDiffAfterARuleChange(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a-keep": "keep", "b-lose": "lose", "c-gain": "gain", "d-rename": "rename",
		"e-doubt": "doubt", "f-wobble": "wobble", "g-clean": "clean", "h-clean": "clean too"})
	before, after := recordRun(t, 1, dir), recordRun(t, 2, dir)
	at := func(name string) string { return filepath.Join(dir, name) }

	p, stdout, stderr := testProgram(t, nil)
	page := filepath.Join(t.TempDir(), "diff.html")
	if code := p.Run(t.Context(), []string{"diff", before, after, "-o", page}); code != 1 {
		t.Errorf("exit %d, want 1 (a detection lost); stderr:\n%s", code, stderr)
	}
	want := "Lost detections (1):\n" +
		"  " + at("b-lose") + ": malicious Fam.Kept 0.90 -> benign 0.20\n" +
		"New detections (1):\n" +
		"  " + at("c-gain") + ": benign 0.20 -> malicious Fam.Kept 0.90\n" +
		"Family changes (1):\n" +
		"  " + at("d-rename") + ": malicious Fam.Old 0.90 -> malicious Fam.New 0.90\n" +
		"Confidence changes (1):\n" +
		"  " + at("e-doubt") + ": malicious Fam.Doubt 0.90 -> malicious Fam.Doubt 0.60\n" +
		"8 artifacts compared: lost detections 1, new detections 1, other verdict changes 0, family changes 1, confidence changes 1\n"
	if diff := cmp.Diff(want, stdout.String()); diff != "" {
		t.Errorf("diff output (-want +got):\n%s", diff)
	}
	if b, err := os.ReadFile(page); err != nil || !strings.Contains(string(b), "<h2>Lost detections (1)</h2>") {
		t.Errorf("diff page: %v", err)
	}

	// A lower threshold lists the wobble too; --json says the same.
	p, stdout, _ = testProgram(t, nil)
	if code := p.Run(t.Context(), []string{"diff", "--json", "--confidence-delta", "0.1", before, after}); code != 1 {
		t.Errorf("--json: exit %d, want 1", code)
	}
	var d runrecord.Diff
	if err := json.Unmarshal(stdout.Bytes(), &d); err != nil {
		t.Fatalf("--json: %v\n%s", err, stdout)
	}
	var got []string
	for _, c := range d.Changes {
		got = append(got, string(c.Change)+" "+filepath.Base(c.Path))
	}
	if want := []string{"lost-detection b-lose", "new-detection c-gain", "family d-rename", "confidence e-doubt", "confidence f-wobble"}; !cmp.Equal(got, want) {
		t.Errorf("--json changes %q, want %q", got, want)
	}

	// Without a lost detection, status 0; the other way round, c-gain is
	// lost.
	p, stdout, _ = testProgram(t, nil)
	if code := p.Run(t.Context(), []string{"diff", after, after}); code != 0 || !strings.HasPrefix(stdout.String(), "8 artifacts compared: lost detections 0,") {
		t.Errorf("a run against itself: exit %d\n%s", code, stdout)
	}
	p, _, _ = testProgram(t, nil)
	if code := p.Run(t.Context(), []string{"diff", after, before}); code != 1 {
		t.Errorf("after to before loses c-gain: exit %d, want 1", code)
	}
}

// A run of the same files moved elsewhere matches them by content: no
// change, each file moved; a file that is gone is listed apart, not a
// lost detection.
func TestDiffMovedFiles(t *testing.T) {
	files := map[string]string{"keep": "keep", "lose": "lose", "clean": "clean"}
	dir1, dir2 := t.TempDir(), t.TempDir()
	writeFiles(t, dir1, files)
	delete(files, "clean")
	writeFiles(t, dir2, files)
	before, after := recordRun(t, 1, dir1), recordRun(t, 1, dir2)
	p, stdout, stderr := testProgram(t, nil)
	if code := p.Run(t.Context(), []string{"diff", before, after}); code != 0 {
		t.Errorf("exit %d, want 0; stderr:\n%s", code, stderr)
	}
	want := "In the old run alone, not compared (1):\n  " + filepath.Join(dir1, "clean") + "\n" +
		"2 artifacts compared (2 moved): lost detections 0, new detections 0, other verdict changes 0, family changes 0, confidence changes 0\n"
	if diff := cmp.Diff(want, stdout.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestReportCommand(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"keep": "keep", "clean": "clean"})
	rec := recordRun(t, 1, dir)
	page := filepath.Join(t.TempDir(), "run.html")
	p, stdout, stderr := testProgram(t, nil)
	if code := p.Run(t.Context(), []string{"report", rec, "-o", page}); code != 0 || stdout.Len() != 0 {
		t.Fatalf("exit %d, stdout %q; stderr:\n%s", code, stdout, stderr)
	}
	b, err := os.ReadFile(page)
	if err != nil || !strings.Contains(string(b), `<svg id="chart-verdicts"`) || !strings.Contains(string(b), "Fam.Kept") {
		t.Errorf("report page: %v\n%s", err, b)
	}
	// To stdout by default.
	p, stdout, _ = testProgram(t, nil)
	if code := p.Run(t.Context(), []string{"report", rec}); code != 0 || !strings.HasPrefix(stdout.String(), "<!doctype html>") {
		t.Errorf("report to stdout: exit %d, %.40q", code, stdout)
	}
}

// Bad command lines exit 2; records that cannot be read exit 1 with one
// line naming the file, and leave no page behind.
func TestWorkbenchErrors(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"bad.json": `{"artifacts":3}` + "\n", "new.json": `{"type":"header","format":"psengine-run","version":9}` + "\n"})
	bad, newer := filepath.Join(dir, "bad.json"), filepath.Join(dir, "new.json")
	page := filepath.Join(dir, "out.html")
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"report"}, 2, "report needs one RECORD"},
		{[]string{"report", bad, bad}, 2, "report needs one RECORD"},
		{[]string{"diff", bad}, 2, "diff needs two RECORDs"},
		{[]string{"diff", "--confidence-delta", "0", bad, bad}, 2, "--confidence-delta 0: want a number above 0"},
		{[]string{"diff", "--confidence-delta", "NaN", bad, bad}, 2, "want a number above 0"},
		{[]string{"report", "-o", page, bad}, 1, bad + ": not a psengine run record: the first line is not its header"},
		{[]string{"report", "-o", page, newer}, 1, newer + ": run record of an unsupported version: version 9 (this program reads version 1)"},
		{[]string{"diff", "-o", page, bad, newer}, 1, bad + ": not a psengine run record"},
		{[]string{"report", "-o", page, filepath.Join(dir, "missing.json")}, 1, "no such file"},
	} {
		p, _, stderr := testProgram(t, nil)
		if code := p.Run(t.Context(), c.args); code != c.code || !strings.Contains(stderr.String(), c.msg) {
			t.Errorf("%q: exit %d, stderr %q; want %d, %q", c.args, code, stderr, c.code, c.msg)
		}
	}
	if _, err := os.Stat(page); !os.IsNotExist(err) {
		t.Errorf("a page was left behind: %v", err)
	}
}

// A partial record is reported as one, with a warning.
func TestReportPartialRecord(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"keep": "keep", "clean": "clean"})
	rec := recordRun(t, 1, dir)
	b, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	cut := b[:strings.Index(string(b), `{"type":"summary"`)+10] // killed while writing the summary
	if err := os.WriteFile(rec, cut, 0o600); err != nil {
		t.Fatal(err)
	}
	p, stdout, stderr := testProgram(t, nil)
	if code := p.Run(t.Context(), []string{"report", rec}); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr.String(), "a partial run (no summary: interrupted), 2 artifacts recorded") ||
		!strings.Contains(stdout.String(), "Partial run") {
		t.Errorf("stderr %q", stderr)
	}
}
