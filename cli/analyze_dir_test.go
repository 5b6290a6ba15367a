package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/creack/pty"
	"github.com/polyswarm/psengine"
)

// byContent answers by the artifact's first byte: M malicious, B benign,
// S suspicious, U unsupported; anything else unknown.
var byContent = psengine.ScannerFunc(func(_ context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	b, err := a.Bytes()
	if err != nil || len(b) == 0 {
		return psengine.Analysis{Verdict: psengine.Unknown}, err
	}
	switch b[0] {
	case 'M':
		return psengine.Analysis{Verdict: psengine.Malicious, Confidence: float64(len(b)%10) / 10}, nil
	case 'B':
		return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.2}, nil
	case 'S':
		return psengine.Analysis{Verdict: psengine.Suspicious}, nil
	case 'U':
		return psengine.Analysis{}, fmt.Errorf("%w: not for me", psengine.ErrUnsupported)
	}
	return psengine.Analysis{Verdict: psengine.Unknown}, nil
})

// testProgram is a Program over s with its streams in buffers (stderr may
// be replaced) and its directories under a temp dir.
func testProgram(t *testing.T, s psengine.Scanner) (*Program, *bytes.Buffer, *bytes.Buffer) {
	home := t.TempDir()
	var stdout, stderr bytes.Buffer
	return &Program{Name: "test", Scanner: s, Stdout: &stdout, Stderr: &stderr,
		Getenv: func(k string) string {
			switch k {
			case "PSENGINE_HOME", "PSENGINE_RUNTIME_DIR":
				return home
			case "LOG_LEVEL":
				return "warn"
			}
			return ""
		}}, &stdout, &stderr
}

// corpus writes n files in a tree under a new directory (names chosen so
// that walking order and path order differ: "a-b" sorts before "a/"), and
// returns the directory and the files' paths in lexical order.
func corpus(t *testing.T, n int) (string, []string) {
	root := t.TempDir()
	dirs := []string{"a", "a/b", "a-b", "A", "z/y/x", "ü", "0"}
	kinds := "MBSUX"
	var paths []string
	for i := range n {
		dir := filepath.Join(root, dirs[i%len(dirs)])
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, fmt.Sprintf("f%03d.bin", (i*37)%n))
		content := fmt.Sprintf("%c sample %d %s", kinds[i%len(kinds)], i, strings.Repeat("x", i%7))
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return root, paths
}

// jsonLines parses analyze --json output.
func jsonLines(t *testing.T, out string) []wireResult {
	t.Helper()
	var res []wireResult
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var w wireResult
		if err := json.Unmarshal(sc.Bytes(), &w); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		res = append(res, w)
	}
	return res
}

func readSummary(t *testing.T, path string) summaryJSON {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s summaryJSON
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return s
}

// A directory tree of 300 files is answered in path order, exactly as the
// same files given as arguments; the summary's counts match the answers;
// stderr, not a terminal, shows no progress.
func TestAnalyzeDirectoryTree(t *testing.T) {
	root, paths := corpus(t, 300)
	p, stdout, stderr := testProgram(t, byContent)
	sumFile := filepath.Join(t.TempDir(), "summary.json")
	if code := p.Run(t.Context(), []string{"analyze", "--json", "--summary-json", sumFile, root}); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	lines := jsonLines(t, stdout.String())
	if len(lines) != len(paths) {
		t.Fatalf("%d answers, want %d", len(lines), len(paths))
	}
	verdicts := map[string]int{}
	var bids []int64
	for i, l := range lines {
		if l.Bounty.ArtifactURI != paths[i] {
			t.Fatalf("answer %d is for %s, want %s (path order)", i, l.Bounty.ArtifactURI, paths[i])
		}
		verdicts[string(l.Analysis.Verdict)]++
		if l.Analysis.Bid > 0 {
			bids = append(bids, l.Analysis.Bid)
		}
	}

	s := readSummary(t, sumFile)
	if s.Artifacts != 300 || s.Answered != 300 || s.Unanswered != 0 || len(s.Errors) != 0 {
		t.Errorf("summary: %+v", s)
	}
	if !equalCounts(s.Verdicts, verdicts) {
		t.Errorf("summary verdicts %v, answers say %v", s.Verdicts, verdicts)
	}
	if s.Skipped["SKIPPED:TYPE-UNSUPPORTED"] != 60 {
		t.Errorf("summary skipped %v, want 60 SKIPPED:TYPE-UNSUPPORTED", s.Skipped)
	}
	slices.Sort(bids)
	if s.Bids == nil || s.Bids.Count != len(bids) || s.Bids.Min != bids[0] || s.Bids.Max != bids[len(bids)-1] ||
		s.Bids.Median != bids[(len(bids)+1)/2-1] {
		t.Errorf("summary bids %+v; answers: %d bids from %d to %d", s.Bids, len(bids), bids[0], bids[len(bids)-1])
	}
	if s.ScanTime == nil || s.ScanTime.Count != 300 || s.ScanTime.P50 <= 0 || s.ScanTime.P50 > s.ScanTime.P95 || s.ScanTime.P95 > s.ScanTime.Max {
		t.Errorf("summary scan time %+v", s.ScanTime)
	}
	// The same on stderr, for people.
	for v, n := range verdicts {
		if want := fmt.Sprintf("%s %d", v, n); !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr summary lacks %q:\n%s", want, stderr)
		}
	}
	for _, want := range []string{"summary: 300 artifacts", "errors: none", "bids (NCT): min ", "scan time: p50 "} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr summary lacks %q:\n%s", want, stderr)
		}
	}
	if strings.ContainsAny(stderr.String(), "\r\x1b") || strings.Contains(stderr.String(), "300/300") {
		t.Errorf("progress drawn on a stderr that is not a terminal:\n%q", stderr)
	}

	// The files as arguments: the same answers in the same order.
	p2, stdout2, stderr2 := testProgram(t, byContent)
	if code := p2.Run(t.Context(), append([]string{"analyze", "--json"}, paths...)); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr2)
	}
	lines2 := jsonLines(t, stdout2.String())
	for i := range lines {
		a, _ := json.Marshal(lines[i].Analysis)
		b, _ := json.Marshal(lines2[i].Analysis)
		if lines2[i].Bounty.ArtifactURI != lines[i].Bounty.ArtifactURI || string(a) != string(b) {
			t.Fatalf("answer %d: %s %s as an argument, %s %s in the directory", i,
				lines2[i].Bounty.ArtifactURI, b, lines[i].Bounty.ArtifactURI, a)
		}
	}
}

func equalCounts(a, b map[string]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

// Symbolic links are not followed out of the tree; what cannot be read is
// reported and counted, never skipped silently.
func TestAnalyzeDirectoryEdges(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symbolic links and FIFOs")
	}
	root := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	mustWrite := func(p, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(outside, "M outside")
	mustWrite(filepath.Join(root, "d", "real.txt"), "B inside")
	mustWrite(filepath.Join(root, "top.txt"), "S top")
	for link, target := range map[string]string{
		"link-in":     "d/real.txt", // a file in the tree: listed under the link's name
		"link-dir":    "d",          // a directory in the tree: not walked twice
		"link-out":    outside,      // out of the tree: refused
		"link-up":     "..",         // a directory out of the tree: refused
		"link-broken": "nowhere",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	emptyArg := t.TempDir()
	linkedRoot := filepath.Join(t.TempDir(), "corpus-link")
	if err := os.Symlink(root, linkedRoot); err != nil {
		t.Fatal(err)
	}

	p, stdout, stderr := testProgram(t, byContent)
	sumFile := filepath.Join(t.TempDir(), "summary.json")
	code := p.Run(t.Context(), []string{"analyze", "--summary-json", sumFile, linkedRoot, emptyArg})
	if code != 1 {
		t.Errorf("exit %d, want 1 (some inputs failed); stderr:\n%s", code, stderr)
	}
	wantOut := strings.Join([]string{
		linkedRoot + "/d/real.txt: benign bid=250000000000000000",
		linkedRoot + "/link-in: benign bid=250000000000000000",
		linkedRoot + "/top.txt: suspicious",
	}, "\n") + "\n"
	if stdout.String() != wantOut {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, wantOut)
	}
	for _, want := range []string{
		linkedRoot + "/fifo: not a regular file",
		linkedRoot + "/link-out: symbolic link leads out of the directory; not followed: " + outside,
		linkedRoot + "/link-up: symbolic link leads out of the directory",
		linkedRoot + "/link-broken: ",
		emptyArg + ": directory holds no file",
	} {
		if !strings.Contains(stderr.String(), "test: "+want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr.String(), "M outside") || strings.Contains(stdout.String(), "malicious") {
		t.Error("a file out of the tree was read")
	}
	s := readSummary(t, sumFile)
	wantErrs := map[string]int{"symlink-outside": 2, "not-regular": 1, "not-found": 1, "empty-dir": 1}
	if s.Artifacts != 8 || s.Answered != 3 || s.Unanswered != 5 || !equalCounts(s.Errors, wantErrs) {
		t.Errorf("summary %+v, want 8 artifacts, 3 answered, errors %v", s, wantErrs)
	}
	if errs := walkTree(linkedRoot); len(errs) != 8-1 {
		t.Errorf("walkTree listed %d entries, want 7: %v", len(errs), errs)
	}
}

// On a terminal, stderr shows the progress (300/300 at the end) and the
// summary below it; --no-progress turns it off.
func TestAnalyzeProgressOnTerminal(t *testing.T) {
	root, paths := corpus(t, 300)
	for _, noProgress := range []bool{false, true} {
		master, tty, err := pty.Open()
		if err != nil {
			t.Skipf("no pseudo-terminal: %v", err)
		}
		var screen bytes.Buffer
		read := make(chan struct{})
		go func() {
			defer close(read)
			_, _ = io.Copy(&screen, master) // ends with EIO once tty is closed
		}()
		p, stdout, _ := testProgram(t, byContent)
		p.Stderr = tty
		args := []string{"analyze", root}
		if noProgress {
			args = append(args, "--no-progress")
		}
		code := p.Run(t.Context(), args)
		tty.Close()
		<-read
		master.Close()
		if code != 0 {
			t.Fatalf("exit %d; terminal:\n%s", code, screen.String())
		}
		if n := strings.Count(stdout.String(), "\n"); n != len(paths) {
			t.Errorf("%d result lines, want %d", n, len(paths))
		}
		out := screen.String()
		if got := strings.Contains(out, "300/300"); got == noProgress {
			t.Errorf("--no-progress %v: progress 300/300 shown %v; terminal:\n%q", noProgress, got, out)
		}
		if !strings.Contains(out, "summary: 300 artifacts") {
			t.Errorf("no summary on the terminal:\n%q", out)
		}
		if !noProgress {
			// The summary starts on a line of its own, after the bar.
			i, j := strings.LastIndex(out, "300/300"), strings.Index(out, "summary:")
			if i < 0 || j < i || !strings.Contains(out[i:j], "\n") {
				t.Errorf("summary not below the final progress line:\n%q", out)
			}
		}
	}
}

func TestSummaryHelpers(t *testing.T) {
	for wei, want := range map[int64]string{
		0: "0", 62500000000000000: "0.0625", 1000000000000000000: "1", 953125000000000000: "0.953125",
		1500000000000000001: "1.500000000000000001", -5: "-0.000000000000000005",
	} {
		if got := formatNCT(wei); got != want {
			t.Errorf("formatNCT(%d) = %q, want %q", wei, got, want)
		}
	}
	xs := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if rank(xs, 0.5) != 5 || rank(xs, 0.95) != 10 || rank(xs[:1], 0.95) != 1 {
		t.Error("rank")
	}
	for err, want := range map[error]string{
		fmt.Errorf("%w: x", psengine.ErrFetch):                                 "fetch",
		fmt.Errorf("%w: %w", psengine.ErrTimeout, psengine.ErrScan):            "timeout",
		fmt.Errorf("walking: %w", ErrSymlinkOutside):                           "symlink-outside",
		&fs.PathError{Op: "open", Path: "x", Err: fs.ErrNotExist}:              "not-found",
		errors.New("something else"):                                           "other",
		fmt.Errorf("%w: queue", psengine.ErrQueueFull):                         "queue-full",
		fmt.Errorf("%w: at noon", psengine.ErrExpired):                         "expired",
		fmt.Errorf("%w: %w", psengine.ErrMalformedBounty, errors.New("no id")): "malformed-bounty",
	} {
		if got := errorKind(err); got != want {
			t.Errorf("errorKind(%v) = %q, want %q", err, got, want)
		}
	}
}

// --summary-json is written for a single artifact too; an unwritable path
// fails the run.
func TestSummaryJSONFile(t *testing.T) {
	p, _, stderr := testProgram(t, byContent)
	path := filepath.Join(t.TempDir(), "s.json")
	if code := p.Run(t.Context(), []string{"analyze", "--summary-json", path, "data:,M"}); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if s := readSummary(t, path); s.Artifacts != 1 || s.Verdicts["malicious"] != 1 {
		t.Errorf("summary %+v", s)
	}
	if strings.Contains(stderr.String(), "summary:") {
		t.Errorf("summary printed for one artifact:\n%s", stderr)
	}
	p, _, stderr = testProgram(t, byContent)
	if code := p.Run(t.Context(), []string{"analyze", "--summary-json", filepath.Join(t.TempDir(), "no", "s.json"), "data:,M"}); code != 1 ||
		!strings.Contains(stderr.String(), "--summary-json") {
		t.Errorf("unwritable summary: exit %d, stderr:\n%s", code, stderr)
	}
}
