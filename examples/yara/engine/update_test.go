package engine_test

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"os"
	"strings"
	"testing"

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

// The update cycle on an engine: unchanged rules keep the same rule set;
// changed rules are recompiled and detect at once with a new
// signatures_version, the replaced rule set is freed; broken rules are an
// error naming the file while the last good rules keep detecting.
func TestUpdateCycle(t *testing.T) {
	needLibyara(t)
	ctx := context.Background()
	dir, tmp := t.TempDir(), t.TempDir()
	writeFile(t, dir, "marker.yar", markerRules)
	e := newEngine(t, engine.Scanner{Rules: dir}, psengine.WithDirs(envdirs.Dirs{Temp: tmp, TempPrefix: "yara-"}))
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	firstEnv := e.Env()
	first, _ := engine.CompiledOf(firstEnv)
	v1 := e.Env().Head().Scanner.SignaturesVersion
	if v1 != first.Digest {
		t.Fatalf("signatures_version %q, want the rules' digest %q", v1, first.Digest)
	}
	newMarker := []byte("xx PSENGINE-NEW-MARKER xx")
	if v := psenginetest.Analyze(t, e, newMarker).Analysis.Verdict; v != psengine.Unknown {
		t.Fatalf("before the new rule: %s, want unknown", v)
	}

	// Unchanged: the same rule set keeps serving; no update is made.
	if err := e.Update(ctx); !errors.Is(err, psengine.ErrUnchanged) {
		t.Fatalf("an update without changes: %v, want ErrUnchanged", err)
	}
	if c, _ := engine.CompiledOf(e.Env()); c != first {
		t.Error("unchanged rules were recompiled")
	}
	if v := psenginetest.Analyze(t, e, []byte("PSENGINE-YARA-MARKER")).Analysis.Verdict; v != psengine.Malicious {
		t.Fatalf("after an update without changes: %s, want malicious (the rules must still be loaded)", v)
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
	psenginetest.Eventually(t, "the replaced rule set to be freed", func() bool {
		return errors.Is((engine.Scanner{}).CheckHealth(ctx, firstEnv), engine.ErrRules)
	})

	// Broken rules: an error naming the file; the last good rules serve.
	broken := writeFile(t, dir, "zz-broken.yar", brokenRule)
	err := e.Update(ctx)
	var re *engine.RulesError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), broken+":8: ") {
		t.Fatalf("Update with broken rules = %v, want a *RulesError naming %s and the line", err, broken)
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
	if err := (engine.Scanner{}).CheckHealth(ctx, e.Env()); !errors.Is(err, engine.ErrRules) {
		t.Errorf("the last rules after shutdown: %v, want freed", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("left in the temp dir after shutdown: %d entries", len(left))
	}
}

// Rule sets built on includes: a change in an included file is a new
// version that detects at once; an included file that breaks fails the
// update, naming that file and line, while the last good rules serve.
func TestIncludedFilesUpdate(t *testing.T) {
	needLibyara(t)
	ctx := context.Background()
	dir := t.TempDir()
	index := writeFile(t, dir, "index.yar", "include \"families/common.yar\"\n"+markerRules)
	common := writeFile(t, dir, "families/common.yar", "include \"deep/leaf.yar\"\n")
	leaf := writeFile(t, dir, "families/deep/leaf.yar", eicarRule)
	e := newEngine(t, engine.Scanner{Rules: index})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c1, _ := engine.CompiledOf(e.Env())
	if got := c1.Includes(); len(got) != 2 || got[0] != common || got[1] != leaf {
		t.Fatalf("includes %v", got)
	}
	v1 := e.Env().Head().Scanner.SignaturesVersion
	newMarker := []byte("xx PSENGINE-NEW-MARKER xx")
	if v := psenginetest.Analyze(t, e, newMarker).Analysis.Verdict; v != psengine.Unknown {
		t.Fatalf("before the change: %s", v)
	}

	// A rule added to the nested include, the top file untouched.
	writeFile(t, dir, "families/deep/leaf.yar", eicarRule+newRule)
	if err := e.Update(ctx); err != nil {
		t.Fatal(err)
	}
	v2 := e.Env().Head().Scanner.SignaturesVersion
	res := psenginetest.Analyze(t, e, newMarker)
	if v2 == v1 || res.Analysis.Verdict != psengine.Malicious || res.Analysis.Metadata.MalwareFamily != "New_Rule" ||
		res.Analysis.Metadata.Scanner.SignaturesVersion != v2 {
		t.Fatalf("after the included file changed: version %q (was %q), %+v", v2, v1, res.Analysis)
	}

	// The nested include broken on its line 3.
	writeFile(t, dir, "families/deep/leaf.yar", "rule Leaf\n{\n  condition: nonsense_identifier\n}\n")
	err := e.Update(ctx)
	var re *engine.RulesError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), leaf+":3: ") {
		t.Fatalf("Update with a broken include = %v, want a *RulesError naming %s:3", err, leaf)
	}
	if v := e.Env().Head().Scanner.SignaturesVersion; v != v2 {
		t.Errorf("signatures_version %q after a failed update, want the last good %q", v, v2)
	}
	if v := psenginetest.Analyze(t, e, newMarker).Analysis.Verdict; v != psengine.Malicious {
		t.Errorf("with a broken include on disk: %s, want malicious (the last good rules)", v)
	}

	// An include removed from disk: the update fails naming it.
	if err := os.Remove(leaf); err != nil {
		t.Fatal(err)
	}
	if err := e.Update(ctx); !errors.As(err, &re) || !strings.Contains(err.Error(), leaf) || !strings.Contains(err.Error(), common) {
		t.Errorf("Update with a missing include = %v", err)
	}
}

// Health: the rules loaded; a self-test scans with them.
func TestCheckHealth(t *testing.T) {
	needLibyara(t)
	ctx := context.Background()
	rules := writeFile(t, t.TempDir(), "rules.yar", markerRules)
	s := engine.Scanner{Rules: rules}
	env, err := s.SetupEngine(ctx, psengine.Env{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckHealth(ctx, env); err != nil {
		t.Fatalf("freshly compiled rules: %v", err)
	}
	if err := s.SelfTest(ctx, env); err != nil {
		t.Errorf("self-test of freshly compiled rules: %v", err)
	}
	if err := s.TeardownEngine(ctx, env); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckHealth(ctx, env); !errors.Is(err, engine.ErrRules) {
		t.Errorf("freed rules: %v, want ErrRules", err)
	}
	if err := s.SelfTest(ctx, env); err == nil {
		t.Error("self-test passed on freed rules")
	}
	if err := s.CheckHealth(ctx, psengine.Env{}); err == nil {
		t.Error("an Env without rules is healthy")
	}
}

// A rule set crosses to a child process as libyara's saved rules, with
// its externals and policy, and scans the same there.
func TestGobRoundTrip(t *testing.T) {
	needLibyara(t)
	rules := writeFile(t, t.TempDir(), "rules.yar", markerRules+eicarRule+
		`rule Ext : info { condition: env == "prod" and extension == ".bin" }`)
	c := compile(t, engine.Scanner{Rules: rules, Externals: "env=prod", NoMatch: psengine.Benign})
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(c); err != nil {
		t.Fatal(err)
	}
	var back *engine.Compiled
	if err := gob.NewDecoder(&buf).Decode(&back); err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if back.Digest != c.Digest || back.Rules != c.Rules || back.Policy.NoMatch != psengine.Benign || back.RuleCount() != 3 {
		t.Errorf("decoded %+v", back)
	}
	sample := psenginetest.File(t, "sample.bin", append([]byte("PSENGINE-YARA-MARKER "), psenginetest.EICAR()...))
	got, err := back.ScanFile(context.Background(), sample)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Rule != "Ps_Marker" || got[2].Rule != "Ext" || !got[2].Info {
		t.Errorf("matches after the round trip: %+v", got)
	}
	c.Close()
	if err := gob.NewEncoder(&bytes.Buffer{}).Encode(c); !errors.Is(err, engine.ErrRules) {
		t.Errorf("encoding freed rules: %v", err)
	}
}
