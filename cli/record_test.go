package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/cli/runrecord"
	"github.com/polyswarm/psengine/psenginetest"
)

// analyze --record writes a line per artifact, in the order of the
// results, that says what --json says of it (verdict, confidence,
// family), with its content's sha256, its time and its error kind; and
// the summary, the same as --summary-json's.
func TestAnalyzeRecord(t *testing.T) {
	root, paths := corpus(t, 60)
	missing := filepath.Join(t.TempDir(), "missing")
	p, stdout, stderr := testProgram(t, byContent)
	dir := t.TempDir()
	recFile, sumFile := filepath.Join(dir, "run.json"), filepath.Join(dir, "summary.json")
	code := p.Run(t.Context(), []string{"analyze", "--json", "--record", recFile, "--summary-json", sumFile, root, missing})
	if code != 1 { // the missing file
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	run, err := runrecord.ReadFile(recFile)
	if err != nil {
		t.Fatal(err)
	}
	if h := run.Header; h.Engine != "test" || h.Backend != "local" || h.Kind != "file" || h.TimesIncludeQueue ||
		!cmp.Equal(h.Inputs, []string{root, missing}) || time.Since(h.Started) > time.Minute {
		t.Errorf("header %+v", h)
	}
	lines := jsonLines(t, stdout.String())
	if len(run.Files) != len(paths)+1 || len(lines) != len(paths) {
		t.Fatalf("%d files recorded, %d answers printed; want %d and %d", len(run.Files), len(lines), len(paths)+1, len(paths))
	}
	for i, f := range run.Files[:len(paths)] {
		a := lines[i].Analysis
		content, err := os.ReadFile(paths[i])
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(content)
		if f.Path != paths[i] || f.SHA256 != hex.EncodeToString(sum[:]) || f.Verdict != a.Verdict ||
			f.Confidence != a.Confidence || f.Family != a.Metadata.MalwareFamily || !(f.Seconds > 0) {
			t.Errorf("file %d: %+v; printed %s %+v", i, f, lines[i].Bounty.ArtifactURI, a)
		}
		if skipped := content[0] == 'U'; (f.Skipped == psengine.CommentUnsupported) != skipped || f.Error != "" {
			t.Errorf("file %d (%c): skipped %q, error %q", i, content[0], f.Skipped, f.Error)
		}
	}
	if f := run.Files[len(paths)]; f.Path != missing || f.Answered() || f.Error != "fetch" || f.SHA256 != "" ||
		!strings.Contains(f.Message, "no such file") {
		t.Errorf("missing file recorded as %+v", f)
	}
	if len(run.Scanners) != 1 || run.Scanners[0].Product != "test" {
		t.Errorf("scanners %+v", run.Scanners)
	}
	if run.Partial() {
		t.Fatal("no summary")
	}
	if diff := cmp.Diff(readSummary(t, sumFile), *run.Summary, cmpopts.IgnoreFields(runrecord.Summary{}, "Seconds")); diff != "" {
		t.Errorf("the record's summary is not --summary-json's (-json +record):\n%s", diff)
	}
}

// With a queue backend too; its times include the queue, and say so.
func TestAnalyzeRecordBackend(t *testing.T) {
	q := &fakeQueue{workers: 2}
	p, _, stderr := testProgram(t, byContent)
	p.Backends = map[string]Backend{"fake": q}
	recFile := filepath.Join(t.TempDir(), "run.json")
	args := []string{"analyze", "--backend", "fake", "--record", recFile}
	for i := range 20 {
		args = append(args, fmt.Sprintf("data:,artifact-%02d", i))
	}
	if code := p.Run(t.Context(), args); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	run, err := runrecord.ReadFile(recFile)
	if err != nil {
		t.Fatal(err)
	}
	if run.Header.Backend != "fake" || !run.Header.TimesIncludeQueue || run.Partial() || !run.Summary.QueueIncluded {
		t.Errorf("header %+v, summary %+v", run.Header, run.Summary)
	}
	for i, f := range run.Files {
		if f.Path != args[5+i] || f.Verdict != psengine.Benign || len(f.SHA256) != 64 || !(f.Seconds > 0) || f.Error != "" {
			t.Errorf("file %d: %+v", i, f)
		}
	}
	if len(run.Files) != 20 {
		t.Errorf("%d files", len(run.Files))
	}
}

// Each line is in the file as soon as its result is known: a run that
// stops (here, held on its last artifact) leaves the record of what it
// did, readable as a partial run.
func TestAnalyzeRecordIsWrittenAsItGoes(t *testing.T) {
	release := make(chan struct{})
	held := psengine.ScannerFunc(func(ctx context.Context, env psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
		if b, _ := a.Bytes(); string(b) == "hold" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return byContent(ctx, env, a)
	})
	p, _, stderr := testProgram(t, held)
	dir := t.TempDir()
	recFile := filepath.Join(dir, "run.json")
	args := []string{"analyze", "--workers", "2", "--record", recFile}
	for i, content := range []string{"M one", "B two", "hold"} {
		path := filepath.Join(dir, fmt.Sprint(i))
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, path)
	}
	code := make(chan int, 1)
	go func() { code <- p.Run(context.Background(), args) }()
	var run *runrecord.Run
	psenginetest.Eventually(t, "the first two results in the record", func() bool {
		var err error
		run, err = runrecord.ReadFile(recFile)
		return err == nil && len(run.Files) == 2
	})
	if !run.Partial() || run.Files[0].Verdict != psengine.Malicious || run.Files[1].Verdict != psengine.Benign {
		t.Errorf("the record during the run: %+v", run)
	}
	close(release)
	if c := <-code; c != 0 {
		t.Fatalf("exit %d; stderr:\n%s", c, stderr)
	}
	if run, err := runrecord.ReadFile(recFile); err != nil || run.Partial() || len(run.Files) != 3 {
		t.Errorf("the record after the run: %v, %+v", err, run)
	}
}

// A record that cannot be created stops analyze before any work.
func TestAnalyzeRecordUnwritable(t *testing.T) {
	scanned := false
	p, stdout, stderr := testProgram(t, psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
		scanned = true
		return psengine.Analysis{Verdict: psengine.Benign}, nil
	}))
	sample := psenginetest.File(t, "sample", []byte("x"))
	bad := filepath.Join(t.TempDir(), "no-such-dir", "run.json")
	if code := p.Run(t.Context(), []string{"analyze", "--record", bad, sample}); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if scanned || stdout.Len() != 0 || !strings.Contains(stderr.String(), "--record: open "+bad) {
		t.Errorf("scanned %v, stdout %q, stderr %q", scanned, stdout, stderr)
	}
}

func TestConfidence(t *testing.T) {
	for _, c := range []struct {
		a    psengine.Analysis
		want float64
	}{
		{psengine.Analysis{Confidence: 0.4, Score: 90}, 0.4},
		{psengine.Analysis{Score: 75}, 0.75},
		{psengine.Analysis{Likelihood: 70}, 0.7},
		{psengine.Analysis{}, 0},
		{psengine.Analysis{Score: 250}, 1},
	} {
		if got := confidence(c.a); got != c.want {
			t.Errorf("confidence(%+v) = %v, want %v", c.a, got, c.want)
		}
	}
}
