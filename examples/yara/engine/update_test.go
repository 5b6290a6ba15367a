package engine_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/examples/yara/engine"
	"github.com/polyswarm/psengine/psenginetest"
)

const newRule = `
rule New_Rule
{
  strings:
    $n = "PSENGINE-NEW-MARKER"
  condition:
    $n
}
`

// tempEntries lists what is left in dir.
func tempEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// The update cycle on an engine: unchanged rules keep the same rule set;
// changed rules are recompiled and detect at once with a new
// signatures_version, the replaced rule set is removed; broken rules are
// an error naming the file while the last good rules keep detecting.
func TestUpdateCycle(t *testing.T) {
	needYara(t)
	ctx := context.Background()
	dir, tmp := t.TempDir(), t.TempDir()
	writeFile(t, dir, "marker.yar", markerRules)
	e := newEngine(t, engine.Scanner{Rules: dir}, psengine.WithDirs(envdirs.Dirs{Temp: tmp, TempPrefix: "yara-"}))
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	first, _ := engine.CompiledOf(e.Env())
	v1 := e.Env().Head().Scanner.SignaturesVersion
	if v1 != first.Digest {
		t.Fatalf("signatures_version %q, want the rules' digest %q", v1, first.Digest)
	}
	newMarker := []byte("xx PSENGINE-NEW-MARKER xx")
	if v := psenginetest.Analyze(t, e, newMarker).Analysis.Verdict; v != psengine.Unknown {
		t.Fatalf("before the new rule: %s, want unknown", v)
	}

	// Unchanged: the same rule set keeps serving, and is not removed when
	// the Env that held it first is released.
	if err := e.Update(ctx); err != nil {
		t.Fatal(err)
	}
	if c, _ := engine.CompiledOf(e.Env()); c != first {
		t.Error("unchanged rules were recompiled")
	}
	if v := psenginetest.Analyze(t, e, []byte("PSENGINE-YARA-MARKER")).Analysis.Verdict; v != psengine.Malicious {
		t.Fatalf("after an update without changes: %s, want malicious (the rules file must still be there)", v)
	}

	// A new rule file: detected after the update, with a new version.
	writeFile(t, dir, "new.yar", newRule)
	if err := e.Update(ctx); err != nil {
		t.Fatal(err)
	}
	second, _ := engine.CompiledOf(e.Env())
	v2 := e.Env().Head().Scanner.SignaturesVersion
	if second == first || v2 == v1 || v2 != second.Digest {
		t.Fatalf("after a change: signatures_version %q (was %q), rule set replaced: %v", v2, v1, second != first)
	}
	res := psenginetest.Analyze(t, e, newMarker)
	if res.Analysis.Verdict != psengine.Malicious || res.Analysis.Metadata.MalwareFamily != "New_Rule" ||
		res.Analysis.Metadata.Scanner.SignaturesVersion != v2 {
		t.Fatalf("after the new rule: %+v", res.Analysis)
	}
	waitGone(t, first.Dir)

	// Broken rules: an error naming the file; the last good rules serve.
	broken := writeFile(t, dir, "zz-broken.yar", brokenRule)
	err := e.Update(ctx)
	var re *engine.RulesError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), broken) {
		t.Fatalf("Update with broken rules = %v, want a *RulesError naming %s", err, broken)
	}
	if c, _ := engine.CompiledOf(e.Env()); c != second || e.Env().Head().Scanner.SignaturesVersion != v2 {
		t.Error("broken rules replaced the good ones")
	}
	if v := psenginetest.Analyze(t, e, newMarker).Analysis.Verdict; v != psengine.Malicious {
		t.Errorf("with broken rules on disk: %s, want malicious (the last good rules)", v)
	}
	if err := e.Ready(ctx); err != nil {
		t.Errorf("Ready with the last good rules serving: %v", err)
	}
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if left := tempEntries(t, tmp); len(left) != 0 {
		t.Errorf("left in the temp dir after shutdown: %v", left)
	}
}

// waitGone waits for the release of a replaced rule set, which the engine
// runs in the background.
func waitGone(t *testing.T, dir string) {
	t.Helper()
	for range 500 {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("the replaced rule set %s was not removed", dir)
}

// Health: the compiled rules file present and written by yarac.
func TestCheckHealth(t *testing.T) {
	needYara(t)
	ctx := context.Background()
	rules := writeFile(t, t.TempDir(), "rules.yar", markerRules)
	s := engine.Scanner{Rules: rules}
	env, err := s.SetupEngine(ctx, psengine.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.TeardownEngine(ctx, env)
	if err := s.CheckHealth(ctx, env); err != nil {
		t.Fatalf("freshly compiled rules: %v", err)
	}
	if err := s.SelfTest(ctx, env); err != nil {
		t.Errorf("self-test of freshly compiled rules: %v", err)
	}
	c, _ := engine.CompiledOf(env)
	if err := os.WriteFile(c.Path, []byte("rule not_compiled { condition: true }"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckHealth(ctx, env); !errors.Is(err, engine.ErrRules) {
		t.Errorf("a rules file yarac did not write: %v, want ErrRules", err)
	}
	if err := s.SelfTest(ctx, env); err == nil {
		t.Error("self-test passed on a file yara cannot load")
	}
	if err := os.Remove(c.Path); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckHealth(ctx, env); !errors.Is(err, engine.ErrRules) || !strings.Contains(err.Error(), c.Path) {
		t.Errorf("missing compiled rules: %v, want ErrRules naming %s", err, c.Path)
	}
	if err := s.CheckHealth(ctx, psengine.Env{}); err == nil {
		t.Error("an Env without rules is healthy")
	}
}
