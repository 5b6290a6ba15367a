package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/cli"
	"github.com/polyswarm/psengine/cli/clitest"
	"github.com/polyswarm/psengine/psenginetest"
	"github.com/polyswarm/psengine/resultcache"
)

// scanCounter is a scanner that counts its scans by content.
type scanCounter struct {
	mu    sync.Mutex
	scans map[string]int
}

func (s *scanCounter) Scan(_ context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	data, err := a.Bytes()
	if err != nil {
		return psengine.Analysis{}, err
	}
	s.mu.Lock()
	s.scans[string(data)]++
	s.mu.Unlock()
	if bytes.Contains(data, []byte("MALWARE")) {
		return psengine.Analysis{Verdict: psengine.Malicious, Confidence: 0.9, Metadata: psengine.Metadata{MalwareFamily: "Counted"}}, nil
	}
	return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.2}, nil
}

func (s *scanCounter) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.scans {
		n += c
	}
	return n
}

func counterProgram(s *scanCounter, home string) (*cli.Program, *bytes.Buffer, *bytes.Buffer) {
	var stdout, stderr bytes.Buffer
	env := map[string]string{"PSENGINE_HOME": home, "TMPDIR": home, "LOG_LEVEL": "warn"}
	return &cli.Program{Name: "counter", Scanner: s, Stdout: &stdout, Stderr: &stderr,
		Getenv: func(k string) string { return env[k] }}, &stdout, &stderr
}

// analyze DIR again answers from the result cache in the state directory:
// no scan, the same answers; --no-cache scans again.
func TestAnalyzeRerunIsCached(t *testing.T) {
	home, corpus := t.TempDir(), t.TempDir()
	for i := range 20 {
		content := fmt.Sprintf("sample %d", i)
		if i%4 == 0 {
			content += " MALWARE"
		}
		if err := os.WriteFile(filepath.Join(corpus, fmt.Sprintf("f%02d", i)), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Two names for one content: scanned once in the first run too.
	if err := os.WriteFile(filepath.Join(corpus, "g-dup"), []byte("sample 1"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &scanCounter{scans: map[string]int{}}
	answers := func(args ...string) []string {
		t.Helper()
		p, stdout, stderr := counterProgram(s, home)
		if code := p.Run(context.Background(), append([]string{"analyze", "--json", "--workers", "4"}, args...)); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var out []string
		for line := range strings.Lines(stdout.String()) {
			var r struct{ Analysis json.RawMessage }
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
			out = append(out, string(r.Analysis))
		}
		return out
	}
	first := answers(corpus)
	if n := s.total(); n != 20 {
		t.Fatalf("first run: %d scans, want 20 (21 files, one content twice)", n)
	}
	second := answers(corpus)
	if n := s.total(); n != 20 {
		t.Errorf("the re-run scanned %d files, want none", n-20)
	}
	if strings.Join(first, "\n") != strings.Join(second, "\n") || len(second) != 21 {
		t.Errorf("the cached answers differ:\n%s\n---\n%s", strings.Join(first, "\n"), strings.Join(second, "\n"))
	}
	if _, err := os.Stat(filepath.Join(home, "state", resultcache.DefaultFile)); err != nil {
		t.Errorf("no cache in the state directory: %v", err)
	}
	answers("--no-cache", corpus)
	if n := s.total(); n != 41 {
		t.Errorf("--no-cache scanned %d files, want 21", n-20)
	}
}

// A second process of the engine, while the first holds the cache, runs
// without one, and says so.
func TestAnalyzeWithTheCacheHeld(t *testing.T) {
	home := t.TempDir()
	held, err := resultcache.Open(filepath.Join(home, "state", resultcache.DefaultFile), resultcache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	s := &scanCounter{scans: map[string]int{}}
	for range 2 {
		p, _, stderr := counterProgram(s, home)
		if code := p.Run(context.Background(), []string{"analyze", psenginetest.DataURI([]byte("x"))}); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if !strings.Contains(stderr.String(), "another process of this engine has it open") {
			t.Errorf("no warning: %s", stderr)
		}
	}
	if n := s.total(); n != 2 {
		t.Errorf("%d scans, want 2 (no cache)", n)
	}
}

// The webhook answers the same file in a second bounty from the cache:
// one scan, two answers, each with its own bid; --no-cache scans each.
func TestWebhookSameFileScannedOnce(t *testing.T) {
	for _, tc := range []struct {
		flags []string
		scans int
	}{{nil, 1}, {[]string{"--no-cache"}, 2}} {
		s := &scanCounter{scans: map[string]int{}}
		p, _, _ := counterProgram(s, t.TempDir())
		w := clitest.StartWebhook(t, p, tc.flags...)
		answers := clitest.NewAnswers(t)
		data := []byte("MALWARE sample")
		var got []psengine.Answer
		for _, id := range []string{"1", "2"} {
			b := psenginetest.Bounty(data, psenginetest.WithID(id), psenginetest.WithResponseURL(answers.URL(id)),
				psenginetest.WithExpiration(time.Now().Add(time.Hour)))
			if id == "2" {
				b.Rules.Max = b.Rules.Min * 2
			}
			w.Post(t, id, b)
			got = append(got, answers.Wait(t, id))
		}
		_, scrape := w.Get(t, "/metrics")
		w.Stop(t)
		hit := strings.Contains(scrape, `psengine_cache_lookups_total{result="hit"} 1`)
		if cached := tc.scans == 1; hit != cached {
			t.Errorf("%v: /metrics shows a cache hit: %v, want %v:\n%s", tc.flags, hit, cached, grepLines(scrape, "psengine_cache"))
		}
		if n := s.total(); n != tc.scans {
			t.Errorf("%v: %d scans, want %d", tc.flags, n, tc.scans)
		}
		if got[0].Verdict != psengine.Malicious || got[1].Verdict != psengine.Malicious || got[0].Bid == got[1].Bid {
			t.Errorf("%v: answers %+v and %+v: want malicious, each bid in its bounty's rules", tc.flags, got[0], got[1])
		}
	}
}

// grepLines returns the lines of s holding sub.
func grepLines(s, sub string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}
