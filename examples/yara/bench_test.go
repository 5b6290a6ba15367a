package main

// The engine against yara's own command line, in the same run, on the same
// files and rules:
//
//	go test -run '^$' -bench VsYaraCLI -benchtime 3x ./examples/yara
//
// BenchmarkVsYaraCLI builds the example program, a corpus of 2,000 real
// files (from /usr/bin, /usr/lib, /usr/share/doc and Go's own testdata,
// at most 4 MiB each) and 3,000 generated rules (text, hex and regular
// expression strings, some taken from the corpus so that they match,
// conditions on file headers, sizes and counts), then runs, alternating
// which goes first:
//
//	yara -r -p 2 RULES DIR
//	yara-engine analyze --no-progress --no-cache --workers 2 DIR   (YARA_RULES=RULES)
//
// and reports each one's wall and CPU time (user + system of the process)
// per run and their ratios, engine/yara: "ratio" (wall) and "cpu-ratio".
// It skips without the yara program (apt-get install yara).

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// corpus copies up to n regular files of at most maxSize bytes from the
// sources into dir, taking files spread evenly over each source's sorted
// list, n/len(sources) per source.
func corpus(b *testing.B, dir string, n int, maxSize int64, sources ...string) []string {
	b.Helper()
	var out []string
	per := n / len(sources)
	for si, src := range sources {
		var found []string
		_ = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // unreadable: skip
			}
			if d.Type().IsRegular() {
				if info, err := d.Info(); err == nil && info.Size() > 0 && info.Size() <= maxSize {
					found = append(found, p)
				}
			}
			return nil
		})
		slices.Sort(found)
		if len(found) < per {
			b.Fatalf("%s: %d files, want %d", src, len(found), per)
		}
		for i := range per {
			from := found[i*len(found)/per]
			data, err := os.ReadFile(from)
			if err != nil {
				b.Fatal(err)
			}
			to := filepath.Join(dir, fmt.Sprintf("s%d", si), fmt.Sprintf("%04d-%s", i, filepath.Base(from)))
			if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(to, data, 0o644); err != nil {
				b.Fatal(err)
			}
			out = append(out, to)
		}
	}
	return out
}

// generateRules writes n rules: a mix of text, hex and regular expression
// strings and of conditions; one string in twelve is taken from a corpus
// file, so that some rules match.
func generateRules(b *testing.B, files []string, n int) string {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	word := func(min, max int) string {
		const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
		w := make([]byte, min+rng.IntN(max-min+1))
		for i := range w {
			w[i] = letters[rng.IntN(len(letters))]
		}
		return string(w)
	}
	sample := func() []byte { // bytes from a corpus file
		data, err := os.ReadFile(files[rng.IntN(len(files))])
		if err != nil {
			b.Fatal(err)
		}
		size := 8 + rng.IntN(8)
		if len(data) <= size {
			return nil
		}
		off := rng.IntN(len(data) - size)
		return data[off : off+size]
	}
	hexOf := func(p []byte, wildcard bool) string {
		parts := make([]string, len(p))
		for i, c := range p {
			parts[i] = fmt.Sprintf("%02X", c)
		}
		if wildcard && len(parts) > 6 {
			parts[len(parts)-2] = "??"
		}
		return "{ " + strings.Join(parts, " ") + " }"
	}
	var src strings.Builder
	for i := range n {
		var strs []string
		for j := range 1 + rng.IntN(4) {
			var s string
			switch k := rng.IntN(12); {
			case k == 0: // from the corpus: may match
				p := sample()
				if p == nil {
					p = []byte(word(8, 12))
				}
				s = hexOf(p, rng.IntN(2) == 0)
			case k < 6:
				s = fmt.Sprintf("%q", word(6, 14))
				switch rng.IntN(6) {
				case 0:
					s += " nocase"
				case 1:
					s += " wide ascii"
				case 2:
					s += " fullword"
				}
			case k < 10:
				s = hexOf([]byte(word(6, 10)), true)
				if rng.IntN(3) == 0 {
					s = strings.Replace(s, "??", "[1-4]", 1)
				}
			default:
				s = fmt.Sprintf("/%s[0-9a-f]{2,8}%s/", word(4, 6), word(3, 5))
			}
			strs = append(strs, fmt.Sprintf("    $s%d = %s", j, s))
		}
		var cond string
		switch rng.IntN(6) {
		case 0:
			cond = "all of them"
		case 1:
			cond = "uint16(0) == 0x5a4d and any of them"
		case 2:
			cond = "uint32(0) == 0x464c457f and any of them"
		case 3:
			cond = fmt.Sprintf("filesize < %dKB and any of them", 1+rng.IntN(2048))
		case 4:
			cond = "#s0 > 1 or any of them"
		default:
			cond = "any of them"
		}
		tags := ""
		if rng.IntN(5) == 0 {
			tags = " : gen tag" + word(2, 4)
		}
		fmt.Fprintf(&src, "rule Gen_%05d%s\n{\n  meta:\n    description = \"generated rule %d, it's a test\"\n    score = %d\n  strings:\n%s\n  condition:\n    %s\n}\n\n",
			i, tags, i, 30+rng.IntN(71), strings.Join(strs, "\n"), cond)
	}
	path := filepath.Join(b.TempDir(), "generated.yar")
	if err := os.WriteFile(path, []byte(src.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

// timed runs cmd and returns its wall and CPU time (user + system).
func timed(b *testing.B, cmd *exec.Cmd) (wall, cpu time.Duration, stdout []byte) {
	b.Helper()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	wall = time.Since(start)
	if err != nil {
		b.Fatalf("%s: %v\n%s", cmd, err, errOut.String())
	}
	return wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), out.Bytes()
}

// benchSetup is what the program benchmarks share: the built program, the
// corpus (2,000 real files of at most 4 MiB), 3,000 rules generated from
// it, and a home directory for the engine.
type benchSetup struct {
	bin, dir, rules, home string
	files                 []string
}

// setup builds the program and writes the corpus and rules; it skips
// without libyara or the go command.
func setup(b *testing.B) benchSetup {
	b.Helper()
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
	s := benchSetup{bin: filepath.Join(tmp, "yara-engine"), dir: filepath.Join(tmp, "corpus"), home: filepath.Join(tmp, "home")}
	if out, err := exec.Command(goTool, "build", "-o", s.bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	s.files = corpus(b, s.dir, 2000, 4<<20, "/usr/bin", "/usr/lib", "/usr/share/doc", filepath.Join(strings.TrimSpace(string(goroot)), "src"))
	s.rules = generateRules(b, s.files, 3000)
	var size int64
	for _, f := range s.files {
		if st, err := os.Stat(f); err == nil {
			size += st.Size()
		}
	}
	b.Logf("corpus: %d files, %d MiB; rules: 3000", len(s.files), size>>20)
	return s
}

// analyze is the command of the program's analyze over the corpus, with
// args before the directory.
func (s benchSetup) analyze(args ...string) *exec.Cmd {
	cmd := exec.Command(s.bin, append(append([]string{"analyze", "--no-progress"}, args...), s.dir)...)
	cmd.Env = append(os.Environ(), "YARA_RULES="+s.rules, "PSENGINE_HOME="+s.home, "LOG_LEVEL=error")
	return cmd
}

// alternately runs first and second once in each iteration of b.Loop,
// swapping which goes first, so that both see the same load on a shared
// machine.
func alternately(b *testing.B, first, second func()) {
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			first()
			second()
		} else {
			second()
			first()
		}
	}
}

func BenchmarkVsYaraCLI(b *testing.B) {
	yara, err := exec.LookPath("yara")
	if err != nil {
		b.Skip("the yara program is needed for the comparison (apt-get install yara)")
	}
	s := setup(b)
	yaraCmd := func() *exec.Cmd { return exec.Command(yara, "-r", "-p", "2", s.rules, s.dir) }
	engineCmd := func() *exec.Cmd { return s.analyze("--no-cache", "--workers", "2") }
	// Warm up the page cache, and check both see matches.
	_, _, out := timed(b, yaraCmd())
	b.Logf("yara: %d matches", bytes.Count(out, []byte("\n")))
	_, _, out = timed(b, engineCmd())
	_, _ = io.Discard.Write(out)

	var yWall, yCPU, eWall, eCPU time.Duration
	alternately(b,
		func() { w, c, _ := timed(b, yaraCmd()); yWall += w; yCPU += c },
		func() { w, c, _ := timed(b, engineCmd()); eWall += w; eCPU += c })
	n := float64(b.N)
	b.ReportMetric(float64(yWall.Milliseconds())/n, "yara-ms/run")
	b.ReportMetric(float64(eWall.Milliseconds())/n, "engine-ms/run")
	b.ReportMetric(float64(yCPU.Milliseconds())/n, "yara-cpu-ms/run")
	b.ReportMetric(float64(eCPU.Milliseconds())/n, "engine-cpu-ms/run")
	b.ReportMetric(float64(eWall)/float64(yWall), "ratio")
	b.ReportMetric(float64(eCPU)/float64(yCPU), "cpu-ratio")
}

// BenchmarkSandboxCorpus runs `analyze --backend process --workers 2` over
// the corpus and rules of BenchmarkVsYaraCLI with the children sandboxed
// (the default) and with --sandbox off, alternating which goes first, and
// reports the CPU-time ratio (the program and its children) as
// "x-unsandboxed-cpu" (target <= 1.05) beside the wall-time one.
func BenchmarkSandboxCorpus(b *testing.B) {
	s := setup(b)
	engineCmd := func(sandbox string) *exec.Cmd {
		cmd := s.analyze("--no-cache", "--workers", "2", "--backend", "process", "--sandbox", sandbox)
		cmd.Env = append(cmd.Env, "TMPDIR="+filepath.Dir(s.dir))
		return cmd
	}
	_, _, on := timed(b, engineCmd("on")) // warm the page cache; both must say the same
	_, _, off := timed(b, engineCmd("off"))
	if m, n := bytes.Count(on, []byte(": malicious")), bytes.Count(off, []byte(": malicious")); m != n || m == 0 {
		b.Fatalf("sandboxed: %d malicious, unsandboxed: %d", m, n)
	}
	var onWall, onCPU, offWall, offCPU time.Duration
	alternately(b,
		func() { w, c, _ := timed(b, engineCmd("on")); onWall += w; onCPU += c },
		func() { w, c, _ := timed(b, engineCmd("off")); offWall += w; offCPU += c })
	n := float64(b.N)
	b.ReportMetric(float64(offCPU.Milliseconds())/n, "unsandboxed-cpu-ms/run")
	b.ReportMetric(float64(onCPU.Milliseconds())/n, "sandboxed-cpu-ms/run")
	b.ReportMetric(float64(onCPU)/float64(offCPU), "x-unsandboxed-cpu")
	b.ReportMetric(float64(onWall)/float64(offWall), "x-unsandboxed")
}
