package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/polyswarm/psengine/cli/runrecord"
)

// The rules before and after a change: Lose_Rule is dropped, Sus_Rule's
// score falls under the malicious threshold, Gain_Rule is added, Old_Name
// is renamed, Doubt_Rule's score drops by 25.
const (
	rulesBefore = `
rule Keep_Rule { strings: $a = "KEEP-MARK" condition: $a }
rule Lose_Rule { strings: $a = "LOSE-MARK" condition: $a }
rule Sus_Rule { meta: score = 90 strings: $a = "SUS-MARK" condition: $a }
rule Old_Name { strings: $a = "RENAME-MARK" condition: $a }
rule Doubt_Rule { meta: score = 100 strings: $a = "DOUBT-MARK" condition: $a }
`
	rulesAfter = `
rule Keep_Rule { strings: $a = "KEEP-MARK" condition: $a }
rule Sus_Rule { meta: score = 50 strings: $a = "SUS-MARK" condition: $a }
rule New_Name { strings: $a = "RENAME-MARK" condition: $a }
rule Doubt_Rule { meta: score = 75 strings: $a = "DOUBT-MARK" condition: $a }
rule Gain_Rule { strings: $a = "GAIN-MARK" condition: $a }
`
)

// Two runs of the yara engine over a corpus, before and after a rule
// change, recorded with analyze --record: diff lists exactly the files
// whose answer changed, each under its kind of change, and exits 1 for
// the lost detections.
func TestDiffAfterARuleChange(t *testing.T) {
	needLibyara(t)
	dir := t.TempDir()
	corpus := filepath.Join(dir, "corpus")
	if err := os.Mkdir(corpus, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"keep-1.bin": "xx KEEP-MARK xx", "keep-2.bin": "KEEP-MARK", "lose.bin": "LOSE-MARK", "sus.bin": "SUS-MARK",
		"gain.bin": "a GAIN-MARK", "rename.bin": "RENAME-MARK", "doubt.bin": "DOUBT-MARK",
		"clean-1.txt": "nothing", "clean-2.txt": "nothing at all", "clean-3.txt": "still nothing",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(corpus, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	record := func(name, rules string) string {
		rulesFile := filepath.Join(dir, name+".yar")
		rec := filepath.Join(dir, name+".json")
		if err := os.WriteFile(rulesFile, []byte(rules), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := run(t, map[string]string{"YARA_RULES": rulesFile, "YARA_NO_MATCH": "benign"}, "analyze", "--record", rec, corpus)
		if code != 0 {
			t.Fatalf("analyze with the rules %s: exit %d\n%s", name, code, errOut)
		}
		return rec
	}
	before, after := record("before", rulesBefore), record("after", rulesAfter)

	code, out, errOut := run(t, nil, "diff", "--json", before, after)
	if code != 1 {
		t.Errorf("diff: exit %d, want 1 (detections lost); stderr:\n%s", code, errOut)
	}
	var d runrecord.Diff
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("diff --json: %v\n%s", err, out)
	}
	var got []string
	for _, c := range d.Changes {
		got = append(got, string(c.Change)+" "+filepath.Base(c.Path)+": "+c.Old.Family+" -> "+c.New.Family)
	}
	want := []string{
		"lost-detection lose.bin: Lose_Rule -> ",
		"lost-detection sus.bin: Sus_Rule -> Sus_Rule", // now suspicious
		"new-detection gain.bin:  -> Gain_Rule",
		"family rename.bin: Old_Name -> New_Name",
		"confidence doubt.bin: Doubt_Rule -> Doubt_Rule", // 1.00 -> 0.75
	}
	if !slices.Equal(got, want) {
		t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if d.Compared != len(files) || len(d.OnlyOld)+len(d.OnlyNew) != 0 {
		t.Errorf("compared %d of %d files; alone: %q %q", d.Compared, len(files), d.OnlyOld, d.OnlyNew)
	}

	// Each run names its rules (their digest, as signatures_version): the
	// change is in the records.
	sigs := func(path string) string {
		r, err := runrecord.ReadFile(path)
		if err != nil || len(r.Scanners) != 1 {
			t.Fatalf("%s: %v, scanners %+v", path, err, r)
		}
		return r.Scanners[0].SignaturesVersion
	}
	if a, b := sigs(before), sigs(after); a == "" || a == b {
		t.Errorf("signatures_version before %q, after %q", a, b)
	}

	// The same runs as a page for people.
	page := filepath.Join(dir, "diff.html")
	if code, _, errOut := run(t, nil, "diff", "-o", page, before, after); code != 1 {
		t.Errorf("diff -o: exit %d\n%s", code, errOut)
	}
	if b, err := os.ReadFile(page); err != nil || !strings.Contains(string(b), "<h2>Lost detections (2)</h2>") {
		t.Errorf("diff page: %v", err)
	}
}
