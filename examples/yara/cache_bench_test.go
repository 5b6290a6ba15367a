package main

// A fully cached re-run against an uncached run, in the same run, on the
// same files and rules:
//
//	go test -run '^$' -bench CachedRerun -benchtime 3x ./examples/yara
//
// BenchmarkCachedRerun builds the example program, the corpus and rules of
// BenchmarkVsYaraCLI (2,000 real files of at most 4 MiB, 3,000 generated
// rules), fills the result cache with one run, then runs, alternating
// which goes first:
//
//	yara-engine analyze --no-progress --no-cache --workers 2 DIR   (uncached: every file scanned)
//	yara-engine analyze --no-progress --workers 2 DIR              (cached: every file answered from the cache)
//
// and reports each one's wall and CPU time (user + system of the process)
// per run and their ratios, cached/uncached: "ratio" (wall) and
// "cpu-ratio" (target <= 0.1). A cached run still reads and hashes every
// file (its sha256 is the key), so it also reports the CPU time of
// `sha256sum` over the same files ("sha256sum-cpu-ms/run"): the floor of
// what a cached run can cost.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func BenchmarkCachedRerun(b *testing.B) {
	needLibyara(b)
	goTool, err := exec.LookPath("go")
	if err != nil {
		b.Skip("the go command is needed to build the program")
	}
	goroot, err := exec.Command(goTool, "env", "GOROOT").Output()
	if err != nil {
		b.Fatal(err)
	}
	tmp := b.TempDir()
	bin := filepath.Join(tmp, "yara-engine")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	dir := filepath.Join(tmp, "corpus")
	files := corpus(b, dir, 2000, 4<<20, "/usr/bin", "/usr/lib", "/usr/share/doc", filepath.Join(strings.TrimSpace(string(goroot)), "src"))
	rules := generateRules(b, files, 3000)
	var size int64
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			size += st.Size()
		}
	}
	b.Logf("corpus: %d files, %d MiB; rules: 3000", len(files), size>>20)
	home := filepath.Join(tmp, "home")

	engineCmd := func(extra ...string) *exec.Cmd {
		args := append(append([]string{"analyze", "--no-progress", "--workers", "2"}, extra...), dir)
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "YARA_RULES="+rules, "PSENGINE_HOME="+home, "LOG_LEVEL=error")
		return cmd
	}
	uncachedCmd := func() *exec.Cmd { return engineCmd("--no-cache") }
	cachedCmd := func() *exec.Cmd { return engineCmd() }
	// Warm the page cache, fill the result cache, and check both runs
	// answer alike.
	_, _, want := timed(b, uncachedCmd())
	_, _, _ = timed(b, cachedCmd())
	if _, _, got := timed(b, cachedCmd()); !bytes.Equal(got, want) {
		b.Fatalf("the cached run answers differently:\n%.2000s\n---\n%.2000s", got, want)
	}
	if n := bytes.Count(want, []byte(": malicious")) + bytes.Count(want, []byte(": suspicious")); n == 0 {
		b.Fatal("no detection in the corpus: the rules do not exercise the answers")
	}
	hashCmd := func() *exec.Cmd { return exec.Command("sha256sum", files...) }

	var uWall, uCPU, cWall, cCPU, hCPU time.Duration
	i := 0
	for b.Loop() {
		timeUncached := func() { w, c, _ := timed(b, uncachedCmd()); uWall += w; uCPU += c }
		timeCached := func() { w, c, _ := timed(b, cachedCmd()); cWall += w; cCPU += c }
		if i%2 == 0 {
			timeUncached()
			timeCached()
		} else {
			timeCached()
			timeUncached()
		}
		_, c, _ := timed(b, hashCmd())
		hCPU += c
		i++
	}
	n := float64(b.N)
	b.ReportMetric(float64(uWall.Milliseconds())/n, "uncached-ms/run")
	b.ReportMetric(float64(cWall.Milliseconds())/n, "cached-ms/run")
	b.ReportMetric(float64(uCPU.Milliseconds())/n, "uncached-cpu-ms/run")
	b.ReportMetric(float64(cCPU.Milliseconds())/n, "cached-cpu-ms/run")
	b.ReportMetric(float64(hCPU.Milliseconds())/n, "sha256sum-cpu-ms/run")
	b.ReportMetric(float64(cWall)/float64(uWall), "ratio")
	b.ReportMetric(float64(cCPU)/float64(uCPU), "cpu-ratio")
}
