package main

// Benchmarks against baselines measured in the same run, on the same clamd:
//
//	go test -run '^$' -bench . -benchtime 5x ./examples/clamav
//
// BenchmarkVsClamdscan: the engine's AnalyzeAll over the 44 testfiles and
// 1,000 small generated files, against `clamdscan --stream` over the same
// files (metric ratio = engine/clamdscan wall time; target <= 1.0).
// BenchmarkScanOverhead: scans one at a time through the whole engine
// (fetch, hash, identify, scan, bid, validate; one worker) against a bare
// loop of open + INSTREAM with the clamd client on one connection, over 200
// small generated files and the testfiles (metric ratio = engine/bare per
// scan; target <= 1.1).

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/examples/clamav/clamd"
	"github.com/polyswarm/psengine/examples/clamav/engine"
	"github.com/polyswarm/psengine/examples/clamav/internal/clamdtest"
)

// smallFiles writes n random files of 512 B to 8 KiB.
func smallFiles(b *testing.B, n int) []string {
	b.Helper()
	dir := b.TempDir()
	paths := make([]string, n)
	for i := range paths {
		var size [2]byte
		_, _ = rand.Read(size[:])
		data := make([]byte, 512+int(size[0])<<5) // 512 B .. 8.5 KiB
		_, _ = rand.Read(data)
		paths[i] = filepath.Join(dir, fmt.Sprintf("small-%04d.bin", i))
		if err := os.WriteFile(paths[i], data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	return paths
}

func benchEngine(b *testing.B, addr clamd.Address, workers int) *psengine.Engine {
	return psengine.New(engine.Scanner{Address: addr.String()},
		psengine.WithName("clamav"), psengine.WithWorkers(workers),
		psengine.WithDirs(envdirs.Dirs{Temp: b.TempDir(), TempPrefix: "clamav-"}))
}

func shutdown(b *testing.B, e *psengine.Engine) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkVsClamdscan(b *testing.B) {
	clamdscan := clamdtest.Need(b, "clamdscan")[0]
	d := clamdtest.StartDaemon(b, clamdtest.StandardSignatures(b))
	testfiles := clamdtest.Testfiles(b)
	files := append(slices.Clone(testfiles), smallFiles(b, 1000)...)
	ctx := context.Background()

	for _, workers := range []int{4, 8} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			var tScan, tEngine time.Duration
			runClamdscan := func() {
				start := time.Now()
				out, err := exec.Command(clamdscan, append([]string{"--stream", "--no-summary", "-c", d.Conf, "--"}, files...)...).Output()
				tScan += time.Since(start)
				if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 1) {
					b.Fatalf("clamdscan: %v\n%s", err, out)
				}
			}
			runEngine := func() {
				start := time.Now()
				e := benchEngine(b, d.Address, workers) // started, used and shut down: a whole run
				results := e.AnalyzeAll(ctx, files)
				shutdown(b, e)
				tEngine += time.Since(start)
				malicious := 0
				for _, r := range results {
					if r.Analysis.Verdict == psengine.Malicious {
						malicious++
					}
				}
				if malicious != len(testfiles) {
					b.Fatalf("%d malicious, want %d", malicious, len(testfiles))
				}
			}
			i := 0
			for b.Loop() { // alternate which goes first
				if i%2 == 0 {
					runClamdscan()
					runEngine()
				} else {
					runEngine()
					runClamdscan()
				}
				i++
			}
			n := float64(b.N)
			b.ReportMetric(float64(tScan.Milliseconds())/n, "clamdscan-ms/run")
			b.ReportMetric(float64(tEngine.Milliseconds())/n, "engine-ms/run")
			b.ReportMetric(float64(tEngine)/float64(tScan), "ratio")
		})
	}
}

func BenchmarkScanOverhead(b *testing.B) {
	d := clamdtest.StartDaemon(b, clamdtest.StandardSignatures(b))
	files := append(smallFiles(b, 200), clamdtest.Testfiles(b)...)
	ctx := context.Background()
	e := benchEngine(b, d.Address, 1)
	defer shutdown(b, e)
	if err := e.Start(ctx); err != nil {
		b.Fatal(err)
	}
	conn, err := clamd.Dial(ctx, d.Address)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()

	bare := func(path string) clamd.Status {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		r, err := conn.InStream(ctx, f)
		if err != nil {
			b.Fatal(err)
		}
		return r.Status
	}
	viaEngine := func(path string) psengine.Verdict {
		res, err := e.Analyze(ctx, path)
		if err != nil {
			b.Fatal(err)
		}
		return res.Analysis.Verdict
	}
	for _, f := range files { // warm both up (page cache, worker connection)
		bare(f)
		viaEngine(f)
	}

	// Each iteration scans every file both ways, in alternating order, so
	// that both see the same load on this shared machine and neither always
	// goes first.
	var tBare, tEngine time.Duration
	for b.Loop() {
		for i, path := range files {
			var st clamd.Status
			var v psengine.Verdict
			timeBare := func() {
				start := time.Now()
				st = bare(path)
				tBare += time.Since(start)
			}
			timeEngine := func() {
				start := time.Now()
				v = viaEngine(path)
				tEngine += time.Since(start)
			}
			if i%2 == 0 {
				timeBare()
				timeEngine()
			} else {
				timeEngine()
				timeBare()
			}
			if (st == clamd.StatusFound) != (v == psengine.Malicious) {
				b.Fatalf("%s: bare %s, engine %s", path, st, v)
			}
		}
	}
	n := float64(b.N * len(files))
	b.ReportMetric(float64(tBare.Microseconds())/n, "bare-µs/scan")
	b.ReportMetric(float64(tEngine.Microseconds())/n, "engine-µs/scan")
	b.ReportMetric(float64(tEngine)/float64(tBare), "ratio")
}
