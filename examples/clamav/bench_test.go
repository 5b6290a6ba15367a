package main

// Benchmarks against baselines measured in the same run, on the same clamd:
//
//	go test -run '^$' -bench . -benchtime 10x ./examples/clamav
//
// BenchmarkAnalyzeDirVsClamdscan: the clamav program (this test binary,
// re-executed as the program) running `analyze DIR` over 2,000 mixed files
// (the 44 testfiles, real PE/ELF/archive/image files from Go's testdata,
// random files of 512 B to 64 KiB), against `clamdscan --fdpass -m` over
// the same directory, on one clamd with 2 scanning threads. Both sides are
// whole runs of a process; CPU is the process's (rusage) plus clamd's
// (/proc). Metrics: wall-ratio and cpu-ratio = program/clamdscan (target
// cpu-ratio <= 1.1), and each side's wall and CPU milliseconds per run.
// BenchmarkScanOverhead: scans one at a time through the whole engine
// (fetch, hash, identify, scan, bid, validate; one worker) against a bare
// loop of open + FILDES with the clamd client on one connection, over 200
// small generated files and the testfiles (metric ratio = engine/bare per
// scan; target <= 1.1).

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/examples/clamav/clamd"
	"github.com/polyswarm/psengine/examples/clamav/engine"
	"github.com/polyswarm/psengine/examples/clamav/internal/clamdtest"
)

// runProgramEnv, set to 1, makes this test binary run the clamav program
// instead of the tests (see TestMain).
const runProgramEnv = "CLAMAV_TEST_RUN_PROGRAM"

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

// mixedFiles writes n files into a new directory: the testfiles, then one
// real file from Go's testdata (PE, ELF, Mach-O, zip, tar, gzip, images;
// those of at most 1 MiB) for every three random files of 512 B to 64 KiB.
func mixedFiles(b *testing.B, n int) (dir string, testfiles int) {
	b.Helper()
	dir = b.TempDir()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		b.Fatalf("go env GOROOT: %v", err)
	}
	goroot := strings.TrimSpace(string(out))
	var real []string
	for _, pattern := range []string{"debug/*/testdata/*", "archive/*/testdata/*", "compress/*/testdata/*", "image/*/testdata/*", "image/testdata/*"} {
		m, _ := filepath.Glob(filepath.Join(goroot, "src", pattern))
		for _, p := range m {
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Size() <= 1<<20 {
				real = append(real, p)
			}
		}
	}
	if len(real) == 0 {
		b.Fatalf("no testdata files under %s", goroot)
	}
	i := 0
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%04d-%s", i, name)), data, 0o600); err != nil {
			b.Fatal(err)
		}
		i++
	}
	for _, p := range clamdtest.Testfiles(b) {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		write(filepath.Base(p), data)
	}
	testfiles = i
	for r := 0; i < n; {
		if i%4 == 0 {
			data, err := os.ReadFile(real[r%len(real)])
			if err != nil {
				b.Fatal(err)
			}
			write(filepath.Base(real[r%len(real)]), data)
			r++
			continue
		}
		var size [2]byte
		_, _ = rand.Read(size[:])
		data := make([]byte, 512+int(size[0])<<8) // 512 B .. 64.5 KiB
		_, _ = rand.Read(data)
		write("random.bin", data)
	}
	return dir, testfiles
}

// procRun is one whole run of a process: its wall time, and the CPU time of
// the process and of clamd.
type procRun struct {
	wall, cpu time.Duration
	clamd     time.Duration // of cpu, clamd's
}

// measure runs cmd and returns its wall time and the CPU time it and clamd
// used, with its stdout.
func measure(b *testing.B, d *clamdtest.Daemon, cmd *exec.Cmd, okCodes ...int) (procRun, string) {
	b.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	before, ok1 := d.CPU()
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	after, ok2 := d.CPU()
	if !ok1 || !ok2 {
		b.Skip("clamd's CPU time is not readable here (no /proc)")
	}
	if ee, ok := err.(*exec.ExitError); err != nil && !(ok && slices.Contains(okCodes, ee.ExitCode())) {
		b.Fatalf("%s: %v\n%s", cmd.Args[0], err, stderr.String())
	}
	ps := cmd.ProcessState
	return procRun{wall: wall, cpu: ps.UserTime() + ps.SystemTime() + after - before, clamd: after - before}, stdout.String()
}

func BenchmarkAnalyzeDirVsClamdscan(b *testing.B) {
	clamdscan := clamdtest.Need(b, "clamdscan")[0]
	cfg := clamdtest.StandardSignatures(b)
	cfg.MaxThreads = 2
	d := clamdtest.StartDaemon(b, cfg)
	dir, signed := mixedFiles(b, 2000)
	home := b.TempDir()
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}

	runClamdscan := func() procRun {
		cmd := exec.Command(clamdscan, "-c", d.Conf, "--fdpass", "-m", "--no-summary", dir)
		r, out := measure(b, d, cmd, 1) // 1: something found
		if n := strings.Count(out, " FOUND\n"); n != signed {
			b.Fatalf("clamdscan found %d, want %d", n, signed)
		}
		return r
	}
	runProgram := func() procRun {
		cmd := exec.Command(self, "analyze", "--no-progress", dir)
		cmd.Env = append(os.Environ(), runProgramEnv+"=1", "CLAMD_ADDRESS="+d.Address.String(),
			"PSENGINE_HOME="+home, "TMPDIR="+home, "LOG_LEVEL=error")
		r, out := measure(b, d, cmd)
		if n := strings.Count(out, ": malicious "); n != signed {
			b.Fatalf("the program found %d malicious, want %d", n, signed)
		}
		return r
	}
	runClamdscan() // warm the page cache and clamd
	runProgram()

	var scan, prog procRun
	i := 0
	for b.Loop() { // alternate which goes first
		var s, p procRun
		if i%2 == 0 {
			s, p = runClamdscan(), runProgram()
		} else {
			p, s = runProgram(), runClamdscan()
		}
		scan.wall, scan.cpu, scan.clamd = scan.wall+s.wall, scan.cpu+s.cpu, scan.clamd+s.clamd
		prog.wall, prog.cpu, prog.clamd = prog.wall+p.wall, prog.cpu+p.cpu, prog.clamd+p.clamd
		i++
	}
	n := float64(b.N)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / n }
	b.ReportMetric(ms(scan.wall), "clamdscan-wall-ms")
	b.ReportMetric(ms(scan.cpu), "clamdscan-cpu-ms")
	b.ReportMetric(ms(scan.clamd), "clamdscan-clamd-cpu-ms")
	b.ReportMetric(ms(prog.wall), "program-wall-ms")
	b.ReportMetric(ms(prog.clamd), "program-clamd-cpu-ms")
	b.ReportMetric(ms(prog.cpu), "program-cpu-ms")
	b.ReportMetric(float64(prog.wall)/float64(scan.wall), "wall-ratio")
	b.ReportMetric(float64(prog.cpu)/float64(scan.cpu), "cpu-ratio")
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
		r, err := conn.ScanFD(ctx, f)
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

// BenchmarkSandboxCorpus runs `analyze --backend process --workers 2` over
// the files of BenchmarkAnalyzeDirVsClamdscan with the children sandboxed
// (the default) and with --sandbox off, alternating which goes first, and
// reports the CPU-time ratio (the program, its children and clamd) as
// "x-unsandboxed-cpu" (target <= 1.05) beside the wall-time one.
func BenchmarkSandboxCorpus(b *testing.B) {
	cfg := clamdtest.StandardSignatures(b)
	cfg.MaxThreads = 2
	d := clamdtest.StartDaemon(b, cfg)
	dir, signed := mixedFiles(b, 2000)
	home := b.TempDir()
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	runProgram := func(sandbox string) procRun {
		cmd := exec.Command(self, "analyze", "--no-progress", "--workers", "2", "--backend", "process", "--sandbox", sandbox, dir)
		cmd.Env = append(os.Environ(), runProgramEnv+"=1", "CLAMD_ADDRESS="+d.Address.String(),
			"PSENGINE_HOME="+home, "TMPDIR="+home, "LOG_LEVEL=error")
		r, out := measure(b, d, cmd)
		if n := strings.Count(out, ": malicious "); n != signed {
			b.Fatalf("--sandbox %s: the program found %d malicious, want %d", sandbox, n, signed)
		}
		return r
	}
	runProgram("on") // warm the page cache and clamd
	runProgram("off")
	var on, off procRun
	i := 0
	for b.Loop() {
		timeOn := func() {
			r := runProgram("on")
			on.wall, on.cpu, on.clamd = on.wall+r.wall, on.cpu+r.cpu, on.clamd+r.clamd
		}
		timeOff := func() {
			r := runProgram("off")
			off.wall, off.cpu, off.clamd = off.wall+r.wall, off.cpu+r.cpu, off.clamd+r.clamd
		}
		if i%2 == 0 {
			timeOn()
			timeOff()
		} else {
			timeOff()
			timeOn()
		}
		i++
	}
	n := float64(b.N)
	b.ReportMetric(float64(off.cpu.Milliseconds())/n, "unsandboxed-cpu-ms/run")
	b.ReportMetric(float64(on.cpu.Milliseconds())/n, "sandboxed-cpu-ms/run")
	b.ReportMetric(float64(off.clamd.Milliseconds())/n, "unsandboxed-clamd-cpu-ms/run")
	b.ReportMetric(float64(on.clamd.Milliseconds())/n, "sandboxed-clamd-cpu-ms/run")
	b.ReportMetric(float64(on.cpu)/float64(off.cpu), "x-unsandboxed-cpu")
	b.ReportMetric(float64(on.wall)/float64(off.wall), "x-unsandboxed")
}
