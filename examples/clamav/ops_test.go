package main

// Acceptance of the clamav program's operation against a real clamd: it
// starts and answers while clamd is down, /readyz follows clamd, and
// `clamav update` makes clamd reload a new database.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/examples/clamav/internal/clamdtest"
	"github.com/polyswarm/psengine/psenginetest"
	"github.com/polyswarm/psengine/webhook"
)

// answerSink collects the answers POSTed to /answer/ID.
type answerSink struct {
	mu  sync.Mutex
	got map[string]psengine.Answer
}

func (a *answerSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var ans psengine.Answer
	if err := json.NewDecoder(r.Body).Decode(&ans); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	a.got[strings.TrimPrefix(r.URL.Path, "/answer/")] = ans
	a.mu.Unlock()
}

func getURL(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	res, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// clamd stopped: the webhook starts anyway, is alive but not ready, and
// answers unknown; clamd started: ready, and EICAR is malicious; clamd
// killed: not ready again; started again: ready.
func TestReadinessFollowsClamd(t *testing.T) {
	d := clamdtest.StartDaemon(t, clamdtest.StandardSignatures(t))
	d.Kill(t)
	sink := &answerSink{got: map[string]psengine.Answer{}}
	answers := httptest.NewServer(sink)
	defer answers.Close()

	home := t.TempDir()
	env := map[string]string{"CLAMD_ADDRESS": d.Address.String(), "PSENGINE_HOME": home, "TMPDIR": home, "LOG_LEVEL": "error"}
	p := program(func(k string) string { return env[k] })
	out, stdout := io.Pipe()
	var stderr psenginetest.SyncBuffer
	p.Stdout, p.Stderr = stdout, &stderr
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	go func() {
		c := p.Run(ctx, []string{"webhook", "--insecure", "--allow-private", "--addr", "127.0.0.1", "-p", "0",
			"--metrics-addr", "127.0.0.1:0"})
		stdout.Close()
		code <- c
	}()
	lines := bufio.NewReader(out)
	readLine := func(prefix string) string {
		l, err := lines.ReadString('\n')
		rest, ok := strings.CutPrefix(strings.TrimSpace(l), prefix)
		if err != nil || !ok {
			t.Fatalf("line %q (%v), want %q...; stderr:\n%s", l, err, prefix, &stderr)
		}
		return rest
	}
	metrics := readLine("metrics on ")
	base := readLine("listening on ")
	go func() { _, _ = io.Copy(io.Discard, lines) }()

	ask := func(id string) psengine.Answer {
		t.Helper()
		b := psenginetest.Bounty(psenginetest.EICAR(), psenginetest.WithID(id),
			psenginetest.WithResponseURL(answers.URL+"/answer/"+id), psenginetest.WithExpiration(time.Now().Add(time.Hour)))
		body, _ := json.Marshal(b)
		req, _ := http.NewRequest(http.MethodPost, base, bytes.NewReader(body))
		req.Header.Set(webhook.HeaderEvent, "bounty")
		client := &http.Client{Timeout: 10 * time.Second}
		defer client.CloseIdleConnections()
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusAccepted {
			t.Fatalf("bounty %s: %d", id, res.StatusCode)
		}
		var ans psengine.Answer
		psenginetest.Eventually(t, "the answer to bounty "+id, func() bool {
			sink.mu.Lock()
			defer sink.mu.Unlock()
			var ok bool
			ans, ok = sink.got[id]
			return ok
		})
		return ans
	}
	ready := func() (int, string) { return getURL(t, metrics+"/readyz") }

	if code, _ := getURL(t, metrics+"/healthz"); code != 200 {
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

	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit %d; stderr:\n%s", c, &stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the webhook did not stop within 30s")
	}
}

// `clamav update` makes clamd reload: the head names the new database
// version. With clamd down it fails, in one line naming the address.
func TestUpdateCommandReloadsClamd(t *testing.T) {
	cfg := clamdtest.StandardSignatures(t)
	cfg.CVDVersion = 42
	d := clamdtest.StartDaemon(t, cfg)
	cfg.CVDVersion = 43
	d.ReplaceDatabase(t, cfg)

	code, out, errOut := run(t, d.Address.String(), "update")
	var head psengine.Metadata
	if code != 0 || json.Unmarshal([]byte(out), &head) != nil {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if head.Product != "clamav" || head.Scanner.VendorVersion == "" || head.Scanner.SignaturesVersion != "43" {
		t.Errorf("head %+v, want signatures_version 43", head.Scanner)
	}

	d.Kill(t)
	code, out, errOut = run(t, d.Address.String(), "update") // LOG_LEVEL=error: the engine's log too
	var report []string
	for _, l := range strings.Split(strings.TrimSpace(errOut), "\n") {
		if strings.HasPrefix(l, "clamav: ") {
			report = append(report, l)
		}
	}
	if code != 1 || out != "" || len(report) != 1 || !strings.Contains(report[0], d.Address.Addr) {
		t.Errorf("clamd down: exit %d, stdout %q, stderr %q; want 1 and one line naming the address", code, out, errOut)
	}
}
