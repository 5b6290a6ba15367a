//go:build linux || darwin

package main_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkLargeFile runs the whole `eicar analyze --json FILE` process on a
// 1 GiB file against `openssl dgst -sha256 FILE` in each iteration, and
// reports the wall-time ratio as "x-openssl" (target <= 1.3) and the
// process's peak RSS as "MiB-maxrss" (target <= 64): one streaming pass, no
// copy of a local file.
func BenchmarkLargeFile(b *testing.B) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		b.Skip("openssl not installed")
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "eicar")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	file := filepath.Join(dir, "big.bin")
	f, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, 1<<30); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	run := func(name string, args ...string) (time.Duration, int64) {
		cmd := exec.Command(name, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("%s: %v\n%s", name, err, out.Bytes())
		}
		rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB
		return time.Since(start), rss
	}
	run(openssl, "dgst", "-sha256", file) // warm the page cache
	var ours, theirs time.Duration
	var maxRSS int64
	for b.Loop() {
		d, _ := run(openssl, "dgst", "-sha256", file)
		theirs += d
		d, rss := run(bin, "analyze", "--json", "--no-cache", file)
		ours += d
		maxRSS = max(maxRSS, rss)
	}
	b.ReportMetric(float64(ours)/float64(theirs), "x-openssl")
	b.ReportMetric(float64(maxRSS)/1024, "MiB-maxrss")
}

// smallFilesProgram builds the program into a temp dir and writes n
// random files of 512 B beside it.
func smallFilesProgram(b *testing.B, n int) (bin, dir string, files []string) {
	b.Helper()
	dir = b.TempDir()
	bin = filepath.Join(dir, "eicar")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	files = make([]string, n)
	for i := range files {
		files[i] = filepath.Join(dir, fmt.Sprintf("f%04d", i))
		buf := make([]byte, 512)
		_, _ = rand.Read(buf)
		if err := os.WriteFile(files[i], buf, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	return bin, dir, files
}

// analyzeTimed runs `bin analyze --json --no-cache --workers 4 ARGS FILES`
// with its home and temp files in dir, and returns its wall time and CPU
// time (the process and its children).
func analyzeTimed(b *testing.B, bin, dir string, files []string, args ...string) (wall, cpu time.Duration) {
	b.Helper()
	cmd := exec.Command(bin, append(append([]string{"analyze", "--json", "--no-cache", "--workers", "4"}, args...), files...)...)
	cmd.Env = append(os.Environ(), "PSENGINE_HOME="+dir, "TMPDIR="+dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("analyze %v: %v\n%s", args, err, out.Bytes())
	}
	return time.Since(start), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// BenchmarkProcessBackendFiles runs the whole `eicar analyze --json
// --workers 4` process over 1,000 small files with --backend process and
// with --backend local in each iteration, and reports the wall-time ratio
// as "x-local" (target <= 1.5) and the CPU-time ratio (the process and its
// children) as "x-local-cpu".
func BenchmarkProcessBackendFiles(b *testing.B) {
	bin, dir, files := smallFilesProgram(b, 1000)
	run := func(backend string) (wall, cpu time.Duration) {
		return analyzeTimed(b, bin, dir, files, "--backend", backend)
	}
	var procWall, procCPU, localWall, localCPU time.Duration
	for b.Loop() {
		w, c := run("process")
		procWall, procCPU = procWall+w, procCPU+c
		w, c = run("local")
		localWall, localCPU = localWall+w, localCPU+c
	}
	b.ReportMetric(float64(procWall)/float64(localWall), "x-local")
	b.ReportMetric(float64(procCPU)/float64(localCPU), "x-local-cpu")
	b.ReportMetric(float64(localWall)/float64(b.N)/float64(time.Millisecond), "ms-local")
}

// BenchmarkSandboxFiles runs the whole `eicar analyze --json --workers 4
// --backend process` over 2,000 small files with the children sandboxed
// (the default) and with --sandbox off in each iteration, and reports
// the wall-time ratio as "x-unsandboxed" and the CPU-time ratio (the
// process and its children) as "x-unsandboxed-cpu" (target <= 1.05).
func BenchmarkSandboxFiles(b *testing.B) {
	bin, dir, files := smallFilesProgram(b, 2000)
	run := func(sandbox string) (wall, cpu time.Duration) {
		return analyzeTimed(b, bin, dir, files, "--backend", "process", "--sandbox", sandbox)
	}
	var onWall, onCPU, offWall, offCPU time.Duration
	for b.Loop() {
		w, c := run("on")
		onWall, onCPU = onWall+w, onCPU+c
		w, c = run("off")
		offWall, offCPU = offWall+w, offCPU+c
	}
	b.ReportMetric(float64(onWall)/float64(offWall), "x-unsandboxed")
	b.ReportMetric(float64(onCPU)/float64(offCPU), "x-unsandboxed-cpu")
	b.ReportMetric(float64(offWall)/float64(b.N)/float64(time.Millisecond), "ms-unsandboxed")
}
