package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/examples/yara/engine"
	"github.com/polyswarm/psengine/resultcache"
)

const nameRule = `
// filename: only in a comment
rule By_Name
{
  meta:
    description = "matches a file named evil.exe (filename, filepath)"
  condition:
    filename == "evil.exe"
}
`

// The cache key of the YARA engine: its policy and fixed externals, and
// the artifact's name only when the rules read a name external (not when
// the word is in a comment or a text string).
func TestCacheKey(t *testing.T) {
	needLibyara(t)
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	marker := write("marker.yar", markerRules+"\n// filepath, owner: words in a comment\n")
	byName := write("name.yar", nameRule)
	a, b := psengine.ArtifactFromBytes(nil), psengine.ArtifactFromBytes(nil)
	a.URI, b.URI = "/tmp/x/evil.exe", "/tmp/x/other.exe"
	key := func(s engine.Scanner, a psengine.Artifact) string {
		t.Helper()
		env, err := s.SetupEngine(context.Background(), psengine.Env{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.TeardownEngine(context.Background(), env)
		k, ok := s.CacheKey(env, a)
		if !ok {
			t.Fatal("not cacheable")
		}
		return k
	}
	if key(engine.Scanner{Rules: marker}, a) != key(engine.Scanner{Rules: marker}, b) {
		t.Error("the name changes the key of rules that read no name")
	}
	if key(engine.Scanner{Rules: byName}, a) == key(engine.Scanner{Rules: byName}, b) {
		t.Error("rules reading filename: two names have one key")
	}
	if key(engine.Scanner{Rules: marker}, a) == key(engine.Scanner{Rules: marker, NoMatch: psengine.Benign}, a) {
		t.Error("NoMatch does not change the key")
	}
	if key(engine.Scanner{Rules: marker}, a) == key(engine.Scanner{Rules: marker, Externals: "env=prod"}, a) {
		t.Error("the externals do not change the key")
	}
	if _, ok := (engine.Scanner{}).CacheKey(psengine.Env{}, a); ok {
		t.Error("an Env without rules is cacheable")
	}
}

// countingYara counts the scans of the YARA engine.
type countingYara struct {
	engine.Scanner
	scans *atomic.Int32
}

func (s countingYara) Scan(ctx context.Context, env psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	s.scans.Add(1)
	return s.Scanner.Scan(ctx, env, a)
}

// Through an engine with a result cache: rules that read the file name
// answer each name for itself (the same content under two names is two
// scans), and the same file again is no scan.
func TestCachedAnswersFollowTheName(t *testing.T) {
	needLibyara(t)
	dir := t.TempDir()
	rules := filepath.Join(dir, "name.yar")
	if err := os.WriteFile(rules, []byte(nameRule), 0o600); err != nil {
		t.Fatal(err)
	}
	evil, other := filepath.Join(dir, "evil.exe"), filepath.Join(dir, "other.exe")
	for _, p := range []string{evil, other} {
		if err := os.WriteFile(p, []byte("the same content"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cache, err := resultcache.Open(filepath.Join(dir, "state", resultcache.DefaultFile), resultcache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	s := countingYara{engine.Scanner{Rules: rules}, new(atomic.Int32)}
	e := psengine.New(s, psengine.WithDirs(envdirs.Dirs{Home: dir, Temp: dir}), psengine.WithResultCache(cache))
	ctx := context.Background()
	defer e.Shutdown(ctx)
	for _, tc := range []struct {
		path string
		want psengine.Verdict
	}{{evil, psengine.Malicious}, {other, psengine.Unknown}, {evil, psengine.Malicious}, {other, psengine.Unknown}} {
		res, err := e.Analyze(ctx, tc.path)
		if err != nil || res.Analysis.Verdict != tc.want {
			t.Errorf("%s: %s (%v), want %s", tc.path, res.Analysis.Verdict, err, tc.want)
		}
	}
	if n := s.scans.Load(); n != 2 {
		t.Errorf("%d scans, want 2 (one per name)", n)
	}
}
