package main

// Acceptance of regression-gated updates with real YARA rules: a rule
// change that drops a detection of the self-test corpus, a broken rule
// file and a rule that fires on a benign file are each refused, naming the
// file, while the previous rules keep serving; a good change is promoted.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/cli/clitest"
	"github.com/polyswarm/psengine/psenginetest"
)

const gatedRules = `
rule Tester_Rule
{
  strings:
    $a = "TESTER-MARKER"
  condition:
    $a
}

rule Second_Rule
{
  strings:
    $b = "SECOND-MARKER"
  condition:
    $b
}
`

// corpus writes a self-test corpus: two samples the rules must detect and
// a benign file.
func selftestCorpus(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"samples/tester.bin": "xx TESTER-MARKER xx",
		"samples/second.bin": "yy SECOND-MARKER yy",
		"docs/readme.txt":    "hello, a harmless readme",
		"manifest.txt": "# the corpus of the gated tests\n" +
			"samples/tester.bin  malicious  Tester_Rule\n" +
			"samples/second.bin  any-detection\n" +
			"docs/readme.txt     benign\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestSelfTestGatesUpdatesThroughTheWebhook(t *testing.T) {
	needLibyara(t)
	rulesDir, home, corpus := t.TempDir(), t.TempDir(), selftestCorpus(t)
	writeRules := func(name, src string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(rulesDir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeRules("gated.yar", gatedRules)
	answers := clitest.NewAnswers(t)
	env := map[string]string{"PSENGINE_HOME": home, "TMPDIR": home, "LOG_LEVEL": "warn", "YARA_RULES": rulesDir}
	w := clitest.StartWebhook(t, program(func(k string) string { return env[k] }),
		"--update-interval", "100ms", "--selftest-dir", corpus)
	scrape := func() string {
		code, body := w.Get(t, "/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		return body
	}
	n := 0
	ask := func(content string) psengine.Answer {
		t.Helper()
		n++
		id := fmt.Sprint(n)
		w.Post(t, id, psenginetest.Bounty([]byte(content+" "+id), psenginetest.WithID(id), // new content: a scan, not the cache
			psenginetest.WithResponseURL(answers.URL(id)), psenginetest.WithExpiration(time.Now().Add(time.Hour))))
		return answers.Wait(t, id)
	}
	v1 := signaturesVersion(scrape())
	// The previous rules serve: the answer is the one before any change.
	servingV1 := func(when string) {
		t.Helper()
		a := ask("xx TESTER-MARKER xx")
		if a.Verdict != psengine.Malicious || a.Metadata.MalwareFamily != "Tester_Rule" || a.Metadata.Scanner.SignaturesVersion != v1 {
			t.Fatalf("%s: %s %q by %q, want malicious Tester_Rule by the previous rules %q", when,
				a.Verdict, a.Metadata.MalwareFamily, a.Metadata.Scanner.SignaturesVersion, v1)
		}
		if v := signaturesVersion(scrape()); v != v1 {
			t.Fatalf("%s: psengine_info says %q, want %q", when, v, v1)
		}
	}
	servingV1("at start")
	refused := func(what string, says ...string) {
		t.Helper()
		psenginetest.Eventually(t, what+" refused, naming "+strings.Join(says, ", "), func() bool {
			log := w.Stderr.String()
			for _, s := range says {
				if !strings.Contains(log, s) {
					return false
				}
			}
			return true
		})
		servingV1("after " + what)
	}

	// A rule change that drops a detection of the corpus.
	writeRules("gated.yar", strings.Replace(gatedRules, `"TESTER-MARKER"`, `"TESTER-MARKEX"`, 1))
	refused("a rule change losing a detection", "samples/tester.bin: detection lost: want malicious", "Tester_Rule")

	// A broken rule file beside the good rules.
	writeRules("gated.yar", gatedRules)
	writeRules("zz-broken.yar", "rule Broken { strings: $a = \"x\" condition: true }\n")
	refused("a broken rule file", filepath.Join(rulesDir, "zz-broken.yar"))
	if err := os.Remove(filepath.Join(rulesDir, "zz-broken.yar")); err != nil {
		t.Fatal(err)
	}

	// A rule that fires on the benign file.
	writeRules("noisy.yar", "rule Noisy { strings: $h = \"hello\" condition: $h }\n")
	refused("a rule firing on a benign file", "docs/readme.txt: a new detection on a benign file", "Noisy")
	if err := os.Remove(filepath.Join(rulesDir, "noisy.yar")); err != nil {
		t.Fatal(err)
	}

	// A good change: promoted.
	writeRules("new.yar", newRule)
	var v2 string
	psenginetest.Eventually(t, "the good rules promoted", func() bool { v2 = signaturesVersion(scrape()); return v2 != v1 })
	if a := ask("xx NEW-MARKER xx"); a.Verdict != psengine.Malicious || a.Metadata.MalwareFamily != "New_Rule" || a.Metadata.Scanner.SignaturesVersion != v2 {
		t.Errorf("after the good change: %s %q by %q, want malicious New_Rule by %q", a.Verdict, a.Metadata.MalwareFamily, a.Metadata.Scanner.SignaturesVersion, v2)
	}
	if failed, _ := metric(scrape(), "psengine_updates_total", `result="failed"`); failed == "" || failed == "0" {
		t.Errorf("psengine_updates_total{result=failed} = %q, want the refusals counted", failed)
	}
	w.Stop(t)
}

// `yara update --selftest-dir`: rules on disk that lose a detection fail
// it, naming the file; broken rules fail it, naming the rule file; good
// rules pass. A bad manifest stops it before it starts.
func TestUpdateCommandSelfTest(t *testing.T) {
	needLibyara(t)
	corpus := selftestCorpus(t)
	rulesDir := t.TempDir()
	rulesFile := filepath.Join(rulesDir, "gated.yar")
	write := func(src string) {
		t.Helper()
		if err := os.WriteFile(rulesFile, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"YARA_RULES": rulesDir}

	write(gatedRules)
	if code, out, errOut := run(t, env, "update", "--selftest-dir", corpus); code != 0 || !strings.Contains(out, `"signatures_version"`) {
		t.Errorf("good rules: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	write(strings.Replace(gatedRules, `"SECOND-MARKER"`, `"SECOND-MARKEX"`, 1))
	code, _, errOut := run(t, env, "update", "--selftest-dir", corpus)
	if code != 1 || !strings.Contains(errOut, "samples/second.bin: detection lost: want any-detection, got unknown") {
		t.Errorf("rules losing a detection: exit %d, stderr %q", code, errOut)
	}
	write(gatedRules + "\nrule Broken { condition: nonsense }\n")
	code, _, errOut = run(t, env, "update", "--selftest-dir", corpus)
	if code != 1 || !strings.Contains(errOut, rulesFile) {
		t.Errorf("broken rules: exit %d, stderr %q", code, errOut)
	}
	if err := os.WriteFile(filepath.Join(corpus, "manifest.txt"), []byte("missing.bin malicious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write(gatedRules)
	code, _, errOut = run(t, env, "update", "--selftest-dir", corpus)
	if code != 1 || !strings.Contains(errOut, "--selftest-dir") || !strings.Contains(errOut, "line 1") {
		t.Errorf("a manifest naming a missing file: exit %d, stderr %q", code, errOut)
	}
}
