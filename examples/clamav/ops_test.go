package main

// Acceptance of the clamav program's operation against a real clamd: it
// starts and answers while clamd is down, /readyz follows clamd, and
// `clamav update` makes clamd reload a new database.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/cli/clitest"
	"github.com/polyswarm/psengine/examples/clamav/internal/clamdtest"
	"github.com/polyswarm/psengine/psenginetest"
)

// clamd stopped: the webhook starts anyway, is alive but not ready, and
// answers unknown; clamd started: ready, and EICAR is malicious; clamd
// killed: not ready again; started again: ready.
func TestReadinessFollowsClamd(t *testing.T) {
	d := clamdtest.StartDaemon(t, clamdtest.StandardSignatures(t))
	d.Kill(t)
	answers := clitest.NewAnswers(t)
	home := t.TempDir()
	env := map[string]string{"CLAMD_ADDRESS": d.Address.String(), "PSENGINE_HOME": home, "TMPDIR": home, "LOG_LEVEL": "error"}
	w := clitest.StartWebhook(t, program(func(k string) string { return env[k] }))
	ask := func(id string) psengine.Answer {
		t.Helper()
		w.Post(t, id, psenginetest.Bounty(psenginetest.EICAR(), psenginetest.WithID(id),
			psenginetest.WithResponseURL(answers.URL(id)), psenginetest.WithExpiration(time.Now().Add(time.Hour))))
		return answers.Wait(t, id)
	}
	ready := func() (int, string) { return w.Get(t, "/readyz") }

	if code, _ := w.Get(t, "/healthz"); code != 200 {
		t.Errorf("/healthz with clamd down: %d, want 200", code)
	}
	if code, body := ready(); code != 503 || !strings.Contains(body, d.Address.Addr) {
		t.Errorf("/readyz with clamd down: %d %q, want 503 naming the address", code, body)
	}
	if a := ask("1"); a.Verdict != psengine.Unknown {
		t.Errorf("EICAR with clamd down: %s, want unknown", a.Verdict)
	}

	d.Start(t)
	psenginetest.Eventually(t, "/readyz 200 once clamd answers", func() bool { code, _ := ready(); return code == 200 })
	if a := ask("2"); a.Verdict != psengine.Malicious || !strings.HasPrefix(a.Metadata.MalwareFamily, clamdtest.EicarSig) {
		t.Errorf("EICAR with clamd up: %s %q, want malicious", a.Verdict, a.Metadata.MalwareFamily)
	}

	d.Kill(t)
	if code, _ := ready(); code != 503 {
		t.Errorf("/readyz after clamd died: %d, want 503", code)
	}
	d.Start(t)
	if code, body := ready(); code != 200 {
		t.Errorf("/readyz after clamd restarted: %d %q, want 200", code, body)
	}

	w.Stop(t)
}

// `clamav update` makes clamd reload: the head names the new database
// version. Given the database directory, a malformed database fails it
// (exit 1, one line naming the file). With clamd down it fails, in one line
// naming the address.
func TestUpdateCommandReloadsClamd(t *testing.T) {
	cfg := clamdtest.StandardSignatures(t)
	cfg.CVDVersion = 42
	d := clamdtest.StartDaemon(t, cfg)
	cfg.CVDVersion = 43
	d.ReplaceDatabase(t, cfg)
	vars := map[string]string{"CLAMD_ADDRESS": d.Address.String(), "CLAMD_DATABASE_DIR": d.DBDir}
	report := func(stderr string) []string { // the program's own lines, not the engine's log
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
			if strings.HasPrefix(l, "clamav: ") {
				lines = append(lines, l)
			}
		}
		return lines
	}

	code, out, errOut := runEnv(t, vars, nil, "update")
	var head psengine.Metadata
	if code != 0 || json.Unmarshal([]byte(out), &head) != nil {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if head.Product != "clamav" || head.Scanner.VendorVersion == "" || head.Scanner.SignaturesVersion != "43" {
		t.Errorf("head %+v, want signatures_version 43", head.Scanner)
	}

	broken := filepath.Join(d.DBDir, "broken.ndb")
	if err := os.WriteFile(broken, []byte("Broken:zz:not-a-signature\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runEnv(t, vars, nil, "update")
	if r := report(errOut); code != 1 || out != "" || len(r) != 1 || !strings.Contains(r[0], broken) {
		t.Errorf("malformed database: exit %d, stdout %q, stderr %q; want 1 and one line naming %s", code, out, errOut, broken)
	}
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}

	d.Kill(t)
	code, out, errOut = run(t, d.Address.String(), "update") // LOG_LEVEL=error: the engine's log too
	if r := report(errOut); code != 1 || out != "" || len(r) != 1 || !strings.Contains(r[0], d.Address.Addr) {
		t.Errorf("clamd down: exit %d, stdout %q, stderr %q; want 1 and one line naming the address", code, out, errOut)
	}
}
