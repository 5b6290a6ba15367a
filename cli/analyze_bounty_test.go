package cli

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
)

// analyze -t bounty reads bounty files in the shapes PolySwarm's own tools
// write (a numeric id and a data: URI with no expiration; a guid, an
// artifact_url, an empty expiration, rules [] and a _window phase) and
// answers each on stdout at once: the response_url is printed, never
// POSTed to, even when it leads nowhere.
func TestAnalyzeBountyFiles(t *testing.T) {
	var posts atomic.Int64
	receiver := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { posts.Add(1) }))
	defer receiver.Close()
	eicar := psenginetest.EICAR()
	artifact := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(eicar) }))
	defer artifact.Close()

	withNewlines := append(append([]byte(nil), eicar...), "\n\n\n\n\n\n\n\n"...)
	dir := t.TempDir()
	files := map[string]string{
		"engine.json": `{"id": 2099741177, "artifact_uri": "data:text/plain;base64,` +
			base64.StdEncoding.EncodeToString(withNewlines) + `", "artifact_type": "file", "sha256": "` +
			psenginetest.SHA256(withNewlines) + `", "mimetype": "text/plain", "response_url": "http://127.0.0.1:9"}`,
		"webhooks.json": `{"guid": "a7e8818a-95fc-4487-ad9a-522f6cd88cb2", "artifact_type": "FILE", "artifact_url": "` +
			artifact.URL + `/eicar.com", "sha256": "` + psenginetest.SHA256(eicar) + `", "mimetype": "text/plain", ` +
			`"expiration": "", "phase": "assertion_window", "response_url": "` + receiver.URL + `/answer", "rules": [], "extra_spam": "eggs"}`,
	}
	var args []string
	for _, name := range []string{"engine.json", "webhooks.json"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(files[name]), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, path)
	}
	p, stdout, stderr := testProgram(t, eicarScanner)
	start := time.Now()
	if code := p.Run(context.Background(), append([]string{"analyze", "--json", "--no-progress", "-t", "bounty"}, args...)); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("analyze took %v: it waited on a response_url", d)
	}
	res := jsonLines(t, stdout.String())
	if len(res) != 2 {
		t.Fatalf("%d results, want 2:\n%s", len(res), stdout)
	}
	wantURL := []string{"http://127.0.0.1:9", receiver.URL + "/answer"}
	for i, r := range res {
		if r.Analysis.Verdict != psengine.Malicious || r.Analysis.Bid <= 0 {
			t.Errorf("%s: answered %+v, want malicious with a bid", args[i], r.Analysis)
		}
		if r.Bounty.ResponseURL != wantURL[i] {
			t.Errorf("%s: printed response_url %q, want %q as given", args[i], r.Bounty.ResponseURL, wantURL[i])
		}
	}
	if want := psengine.StringID("a7e8818a-95fc-4487-ad9a-522f6cd88cb2"); res[1].Bounty.ID != want {
		t.Errorf("guid read as id %v, want %v", res[1].Bounty.ID, want)
	}
	if n := posts.Load(); n != 0 {
		t.Errorf("%d answers POSTed by analyze, want none", n)
	}
	if strings.Contains(stderr.String(), "deliver") {
		t.Errorf("analyze tried to deliver:\n%s", stderr)
	}
}

// eicarScanner detects the EICAR test file at the start of an artifact.
var eicarScanner = psengine.ScannerFunc(func(_ context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	b, err := a.Bytes()
	if err != nil {
		return psengine.Analysis{}, err
	}
	if strings.HasPrefix(string(b), string(psenginetest.EICAR())) {
		return psengine.Analysis{Verdict: psengine.Malicious, Confidence: 0.9, Metadata: psengine.Metadata{MalwareFamily: "EICAR"}}, nil
	}
	return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.5}, nil
})

// The sha256 placeholders of real payloads, microengine-webhooks-py's
// fixture ("asdf", with a guid, an artifact_url, "expiration": "" and
// "rules": []) and PolySwarm's documented payload ("optional-for-file"),
// are answered by analyze -t bounty with the content's own sha256, and
// each is warned about once on stderr.
func TestAnalyzeBountyPlaceholderSHA256(t *testing.T) {
	eicar := psenginetest.EICAR()
	dataURI := "data:application/octet-stream;base64," + base64.StdEncoding.EncodeToString(eicar)
	dir := t.TempDir()
	files := map[string]string{
		"webhooks-py.json": `{"guid": "3f0c2d1e-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "artifact_type": "file", "artifact_url": "` + dataURI +
			`", "expiration": "", "rules": [], "sha256": "asdf", "metadata": {}, "response_url": "http://127.0.0.1:9/answer"}`,
		"docs.json": `{"id": 1234, "artifact_type": "FILE", "artifact_uri": "` + dataURI + `", "sha256": "optional-for-file",
			"mimetype": "text/plain", "expiration": "2030-01-01T00:00:00+0000", "phase": "assertion",
			"rules": {"min_allowed_bid": 62500000000000000, "max_allowed_bid": 1000000000000000000},
			"metadata": {"filename": "eicar.com"}, "response_url": "http://127.0.0.1:9/answer"}`,
	}
	var args []string
	for _, name := range []string{"webhooks-py.json", "docs.json"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(files[name]), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, path)
	}
	p, stdout, stderr := testProgram(t, eicarScanner)
	if code := p.Run(context.Background(), append([]string{"analyze", "--json", "--no-progress", "-t", "bounty"}, args...)); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	res := jsonLines(t, stdout.String())
	if len(res) != 2 {
		t.Fatalf("%d results, want 2:\n%s", len(res), stdout)
	}
	for i, r := range res {
		if r.Analysis.Verdict != psengine.Malicious || r.Analysis.Bid <= 0 {
			t.Errorf("%s: answered %+v, want malicious with a bid", args[i], r.Analysis)
		}
		if r.Bounty.SHA256 != "" && r.Bounty.SHA256 != psenginetest.SHA256(eicar) {
			t.Errorf("%s: bounty printed with sha256 %q", args[i], r.Bounty.SHA256)
		}
	}
	for _, placeholder := range []string{"asdf", "optional-for-file"} {
		if n := strings.Count(stderr.String(), placeholder); n != 1 {
			t.Errorf("sha256 %q warned about %d times, want once:\n%s", placeholder, n, stderr)
		}
	}
}
