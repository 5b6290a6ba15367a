package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/creack/pty"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
)

// benchFiles is the corpus of the analyze benchmarks: 10,000 small files
// in 100 directories.
const benchFiles = 10_000

var quick = psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
	return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.5}, nil
})

func benchCorpus(b *testing.B) (root string, paths []string) {
	b.Helper()
	root = b.TempDir()
	for i := range benchFiles {
		dir := filepath.Join(root, fmt.Sprintf("d%02d", i%100))
		if i < 100 {
			if err := os.Mkdir(dir, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("f%05d", i))
		if err := os.WriteFile(p, []byte(fmt.Sprintf("small sample %d\n", i)), 0o644); err != nil {
			b.Fatal(err)
		}
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return root, paths
}

// runAnalyze runs analyze with args, its stderr going to stderr.
func runAnalyze(b *testing.B, home string, stderr io.Writer, args []string) {
	p := &Program{Name: "bench", Scanner: quick, Stdout: io.Discard, Stderr: stderr,
		Getenv: func(k string) string {
			switch k {
			case "PSENGINE_HOME", "PSENGINE_RUNTIME_DIR":
				return home
			}
			return ""
		}}
	if code := p.Run(context.Background(), args); code != 0 {
		b.Fatalf("exit %d", code)
	}
}

// BenchmarkAnalyzeCorpus compares analyze DIR over 10,000 small files
// with the same files given as arguments (the walk, the sort and the
// symlink checks are the difference), and on a pseudo-terminal with and
// without the progress line (its rendering is the difference). Compare the
// ratios in one run:
//
//	go test -run XXX -bench AnalyzeCorpus -count 5 ./cli/
func BenchmarkAnalyzeCorpus(b *testing.B) {
	root, paths := benchCorpus(b)
	home := b.TempDir()
	b.Run("args", func(b *testing.B) {
		args := append([]string{"analyze", "--json", "--no-cache"}, paths...)
		defer psenginetest.MeasureCPU(b)()
		for b.Loop() {
			runAnalyze(b, home, io.Discard, args)
		}
	})
	b.Run("dir", func(b *testing.B) {
		defer psenginetest.MeasureCPU(b)()
		for b.Loop() {
			runAnalyze(b, home, io.Discard, []string{"analyze", "--json", "--no-cache", root})
		}
	})
	// On a terminal, with and without the progress line.
	for _, progress := range []bool{true, false} {
		name, args := "tty-progress", []string{"analyze", "--json", "--no-cache", root}
		if !progress {
			name, args = "tty-no-progress", append(args, "--no-progress")
		}
		b.Run(name, func(b *testing.B) {
			master, tty, err := pty.Open()
			if err != nil {
				b.Skipf("no pseudo-terminal: %v", err)
			}
			drained := make(chan int64)
			go func() {
				n, _ := io.Copy(io.Discard, master)
				drained <- n
			}()
			defer psenginetest.MeasureCPU(b)()
			for b.Loop() {
				runAnalyze(b, home, tty, args)
			}
			b.StopTimer()
			tty.Close()
			n := <-drained
			master.Close()
			b.ReportMetric(float64(n)/float64(b.N), "tty-bytes/op")
		})
	}
}

// BenchmarkWalkTree is the walk alone.
func BenchmarkWalkTree(b *testing.B) {
	root, paths := benchCorpus(b)
	defer psenginetest.MeasureCPU(b)()
	for b.Loop() {
		if got := walkTree(root); len(got) != len(paths) {
			b.Fatalf("%d files", len(got))
		}
	}
}

// BenchmarkProgressAdd is what counting one artifact costs the analyze
// loop (drawing happens on the ticker).
func BenchmarkProgressAdd(b *testing.B) {
	pr := newProgress(io.Discard, b.N+1)
	defer pr.finish()
	defer psenginetest.MeasureCPU(b)()
	for b.Loop() {
		pr.add()
	}
}

// BenchmarkProgressRender is one redraw of the line (the ticker does ten a
// second): its cost times ten is the progress line's share of a CPU.
func BenchmarkProgressRender(b *testing.B) {
	pr := newProgress(io.Discard, 1<<40)
	defer pr.finish()
	defer psenginetest.MeasureCPU(b)()
	for b.Loop() {
		pr.add()
		pr.mu.Lock()
		pr.flush()
		pr.mu.Unlock()
	}
}
