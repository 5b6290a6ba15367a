package main

// Acceptance of live definition updates through the real program: `yara
// webhook --update-interval` picks up a new rule, keeps the last good rules
// when the files break, and shows it all in /metrics; `yara update` prints
// the head.

import (
	"encoding/json"
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

const newRule = `
rule New_Rule
{
  strings:
    $n = "NEW-MARKER"
  condition:
    $n
}
`

// metric returns the value of the first series of the scrape whose line
// starts with name and holds every one of labels ("k=\"v\"").
func metric(scrape, name string, labels ...string) (string, bool) {
next:
	for line := range strings.SplitSeq(scrape, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		return line[strings.LastIndexByte(line, ' ')+1:], true
	}
	return "", false
}

// signaturesVersion is the signatures_version label of psengine_info.
func signaturesVersion(scrape string) string {
	for line := range strings.SplitSeq(scrape, "\n") {
		if strings.HasPrefix(line, "psengine_info{") {
			_, rest, _ := strings.Cut(line, `signatures_version="`)
			v, _, _ := strings.Cut(rest, `"`)
			return v
		}
	}
	return ""
}

func TestLiveRulesUpdateThroughTheWebhook(t *testing.T) {
	needLibyara(t)
	rulesDir, home := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(rulesDir, "tester.yar"), []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	answers := clitest.NewAnswers(t)
	env := map[string]string{"PSENGINE_HOME": home, "TMPDIR": home, "LOG_LEVEL": "warn", "YARA_RULES": rulesDir}
	w := clitest.StartWebhook(t, program(func(k string) string { return env[k] }), "--update-interval", "100ms")
	ask := func(id, content string) psengine.Answer {
		t.Helper()
		w.Post(t, id, psenginetest.Bounty([]byte(content), psenginetest.WithID(id),
			psenginetest.WithResponseURL(answers.URL(id)), psenginetest.WithExpiration(time.Now().Add(time.Hour))))
		return answers.Wait(t, id)
	}
	scrape := func() string {
		code, body := w.Get(t, "/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		return body
	}

	// The rules at start: the new marker is not detected yet.
	v1 := signaturesVersion(scrape())
	if a := ask("1", "xx NEW-MARKER xx"); a.Verdict != psengine.Unknown || a.Metadata.Scanner.SignaturesVersion != v1 || v1 == "" {
		t.Fatalf("before the new rule: %s, signatures_version %q (info says %q)", a.Verdict, a.Metadata.Scanner.SignaturesVersion, v1)
	}

	// A new rule file: detected after an interval, with a new version.
	if err := os.WriteFile(filepath.Join(rulesDir, "new.yar"), []byte(newRule), 0o600); err != nil {
		t.Fatal(err)
	}
	var v2 string
	psenginetest.Eventually(t, "signatures_version to change", func() bool { v2 = signaturesVersion(scrape()); return v2 != v1 })
	a := ask("2", "xx NEW-MARKER xx")
	if a.Verdict != psengine.Malicious || a.Metadata.MalwareFamily != "New_Rule" || a.Metadata.Scanner.SignaturesVersion != v2 {
		t.Fatalf("after the new rule: %s %s, signatures_version %q (want %q)", a.Verdict, a.Metadata.MalwareFamily,
			a.Metadata.Scanner.SignaturesVersion, v2)
	}

	// Broken rules: the updates fail, the last good rules still detect.
	broken := filepath.Join(rulesDir, "zz-broken.yar")
	if err := os.WriteFile(broken, []byte("rule Broken { strings: $a = \"x\" condition: true }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var m string
	psenginetest.Eventually(t, "a failed update counted", func() bool {
		m = scrape()
		_, failed := metric(m, "psengine_updates_total", `result="failed"`)
		return failed
	})
	if ok, _ := metric(m, "psengine_updates_total", `result="ok"`); ok == "" || ok == "0" {
		t.Errorf("psengine_updates_total{result=ok} = %q, want the good updates counted", ok)
	}
	if v := signaturesVersion(m); v != v2 {
		t.Errorf("signatures_version %q after broken rules, want the last good %q", v, v2)
	}
	if a := ask("3", "xx NEW-MARKER xx"); a.Verdict != psengine.Malicious || a.Metadata.Scanner.SignaturesVersion != v2 {
		t.Errorf("with broken rules on disk: %s, signatures_version %q; want malicious by the last good rules %q",
			a.Verdict, a.Metadata.Scanner.SignaturesVersion, v2)
	}
	if code, body := w.Get(t, "/readyz"); code != 200 {
		t.Errorf("/readyz with the last good rules serving: %d %s", code, body)
	}
	if !strings.Contains(w.Stderr.String(), broken) {
		t.Errorf("the failed update's log does not name %s:\n%s", broken, w.Stderr)
	}
	psenginetest.Eventually(t, "psengine_bounties_total: 2 malicious and 1 unknown", func() bool {
		m = scrape()
		mal, _ := metric(m, "psengine_bounties_total", `verdict="malicious"`, `outcome="answered"`)
		unk, _ := metric(m, "psengine_bounties_total", `verdict="unknown"`, `outcome="answered"`)
		return mal == "2" && unk == "1"
	})

	w.Stop(t)
	// Nothing left in the temp directory (compiled rules stay in memory).
	left, _ := filepath.Glob(filepath.Join(home, "*yara-*"))
	if len(left) != 0 {
		t.Errorf("files left behind: %v", left)
	}
}

// `yara update` prints the head: the rules' digest as signatures_version.
func TestUpdateCommand(t *testing.T) {
	needLibyara(t)
	rulesFile := filepath.Join(t.TempDir(), "tester.yar")
	if err := os.WriteFile(rulesFile, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, map[string]string{"YARA_RULES": rulesFile}, "update")
	var head psengine.Metadata
	if code != 0 || json.Unmarshal([]byte(out), &head) != nil {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	_, info, _ := run(t, map[string]string{"YARA_RULES": rulesFile}, "commands", "info")
	want := fmt.Sprintf(`"signatures_version": %q`, head.Scanner.SignaturesVersion)
	if head.Product != "yara" || len(head.Scanner.SignaturesVersion) != 16 || !strings.Contains(info, want) {
		t.Errorf("head %+v; info:\n%s", head, info)
	}
}
