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
	"os/exec"
	"testing"
	"time"
)

func BenchmarkCachedRerun(b *testing.B) {
	s := setup(b)
	engineCmd := func(extra ...string) *exec.Cmd { return s.analyze(append([]string{"--workers", "2"}, extra...)...) }
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
	hashCmd := func() *exec.Cmd { return exec.Command("sha256sum", s.files...) }

	var uWall, uCPU, cWall, cCPU, hCPU time.Duration
	alternately(b,
		func() { w, c, _ := timed(b, uncachedCmd()); uWall += w; uCPU += c },
		func() {
			w, c, _ := timed(b, cachedCmd())
			cWall += w
			cCPU += c
			_, c, _ = timed(b, hashCmd())
			hCPU += c
		})
	n := float64(b.N)
	b.ReportMetric(float64(uWall.Milliseconds())/n, "uncached-ms/run")
	b.ReportMetric(float64(cWall.Milliseconds())/n, "cached-ms/run")
	b.ReportMetric(float64(uCPU.Milliseconds())/n, "uncached-cpu-ms/run")
	b.ReportMetric(float64(cCPU.Milliseconds())/n, "cached-cpu-ms/run")
	b.ReportMetric(float64(hCPU.Milliseconds())/n, "sha256sum-cpu-ms/run")
	b.ReportMetric(float64(cWall)/float64(uWall), "ratio")
	b.ReportMetric(float64(cCPU)/float64(uCPU), "cpu-ratio")
}
