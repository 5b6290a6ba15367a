package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/polyswarm/psengine"
)

// runUpdate runs `update` with s and returns the status, stdout and stderr.
func runUpdate(t *testing.T, s psengine.Scanner, env map[string]string) (int, string, string) {
	t.Helper()
	full := map[string]string{"PSENGINE_HOME": t.TempDir()}
	for k, v := range env {
		full[k] = v
	}
	var stdout, stderr bytes.Buffer
	p := &Program{Name: "updtest", Scanner: s, Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return full[k] }}
	code := p.Run(context.Background(), []string{"update"})
	return code, stdout.String(), stderr.String()
}

// `update` prints the head after the update: the new signatures_version.
func TestUpdateCommandPrintsTheNewHead(t *testing.T) {
	code, out, errOut := runUpdate(t, &opsScanner{}, nil)
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var head psengine.Metadata
	if err := json.Unmarshal([]byte(out), &head); err != nil {
		t.Fatalf("stdout is not the head as JSON: %v\n%s", err, out)
	}
	if head.Product != "ops-test" || head.Scanner.VendorVersion != "9.9" || head.Scanner.SignaturesVersion != "sig-1" {
		t.Errorf("head %+v, want product ops-test, vendor_version 9.9, signatures_version sig-1 (after one update)", head)
	}
}

// A failed update: exit 1 and one line saying why, nothing on stdout; the
// engine's own error log stays off unless LOG_LEVEL asks for it.
func TestUpdateCommandFailure(t *testing.T) {
	s := &opsScanner{}
	s.failNext.Store(true)
	code, out, errOut := runUpdate(t, s, nil)
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if code != 1 || out != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], "updtest: ") || !strings.Contains(lines[0], "/rules/bad.yar") {
		t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing, one line naming the file", code, out, errOut)
	}

	s.failNext.Store(true)
	if _, _, errOut := runUpdate(t, s, map[string]string{"LOG_LEVEL": "error"}); !strings.Contains(errOut, "level=ERROR") {
		t.Errorf("LOG_LEVEL=error: the engine's log is not shown: %q", errOut)
	}

	scanner := psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
		return psengine.Analysis{}, nil
	})
	if code, _, errOut := runUpdate(t, scanner, nil); code != 1 || !strings.Contains(errOut, "no definitions to update") {
		t.Errorf("a scanner without an Updater: exit %d, stderr %q", code, errOut)
	}
}
