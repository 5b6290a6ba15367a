//go:build unix

package main

// Acceptance test of `eicar webhook`: the real binary, driven as PolySwarm
// drives a webhook engine, on loopback only: signed POSTs, artifacts served
// over http, answers captured at response_url, SIGTERM at the end.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/bid"
	"github.com/polyswarm/psengine/examples/eicar/engine"
	"github.com/polyswarm/psengine/psenginetest"
	"github.com/polyswarm/psengine/webhook"
)

const testSecret = "acceptance-secret"

// buildEICAR builds this program into a temp dir.
func buildEICAR(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the go tool is needed to build the binary: %v", err)
		}
		t.Skipf("the go tool is needed to build the binary: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "eicar")
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// answers is the response_url side: /answers/ID answers 503 to the first
// failures[ID] POSTs, then 200, and keeps every POST.
type answers struct {
	failures map[string]int

	mu       sync.Mutex
	attempts map[string][]int    // status answered, per bounty
	taken    map[string][]string // bodies answered 200, per bounty
	arrived  chan string         // the id of each answer taken
}

func (a *answers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/answers/")
	body, err := io.ReadAll(r.Body)
	if err != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "want a JSON POST", http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	code := http.StatusOK
	if len(a.attempts[id]) < a.failures[id] {
		code = http.StatusServiceUnavailable
	}
	a.attempts[id] = append(a.attempts[id], code)
	if code == http.StatusOK {
		a.taken[id] = append(a.taken[id], string(body))
	}
	a.mu.Unlock()
	w.WriteHeader(code)
	if code == http.StatusOK {
		a.arrived <- id
	}
}

type wireAnswer struct {
	Verdict  string           `json:"verdict"`
	Bid      *json.RawMessage `json:"bid"`
	Metadata struct {
		MalwareFamily string   `json:"malware_family"`
		Comments      []string `json:"comments"`
		Product       string   `json:"product"`
	} `json:"metadata"`
}

func TestWebhookAcceptance(t *testing.T) {
	defer goleak.VerifyNone(t)
	bin := buildEICAR(t)
	sample := engine.Sample()

	artifacts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/eicar.com":
			_, _ = w.Write(sample)
		default:
			http.NotFound(w, r)
		}
	}))
	defer artifacts.Close()
	recv := &answers{
		failures: map[string]int{"3": 2},
		attempts: map[string][]int{},
		taken:    map[string][]string{},
		arrived:  make(chan string, 100),
	}
	responses := httptest.NewServer(recv)
	defer responses.Close()

	// The child.
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The artifacts are served on loopback, which the webhook refuses by default.
	cmd := exec.CommandContext(ctx, bin, "webhook", "--addr", "127.0.0.1", "-p", "0", "--workers", "2", "--allow-private")
	cmd.Env = append(os.Environ(), "PSENGINE_WEBHOOK_SECRET="+testSecret, "LOG_LEVEL=debug", "LOG_FORMAT=text",
		"TMPDIR="+dir, "PSENGINE_RUNTIME_DIR="+dir, "HOME="+dir, "XDG_CACHE_HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr psenginetest.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// One goroutine reads stdout (the first line is the address), then
	// reaps the child.
	first := make(chan string, 1)
	exited := make(chan struct{})
	var waitErr error
	go func() {
		lines := bufio.NewScanner(stdout)
		if lines.Scan() {
			first <- lines.Text()
		}
		close(first)
		_, _ = io.Copy(io.Discard, stdout)
		waitErr = cmd.Wait()
		close(exited)
	}()
	defer func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("eicar webhook stderr:\n%s", stderr.String())
		}
	}()
	var line string
	select {
	case line = <-first:
	case <-time.After(30 * time.Second):
		t.Fatal("eicar webhook printed nothing within 30s")
	}
	base, ok := strings.CutPrefix(line, "listening on ")
	if !ok || !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("first line %q, want listening on http://127.0.0.1:PORT", line)
	}

	client := &http.Client{Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	send := func(method string, body []byte, headers ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+"/", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(out)
	}
	signedPost := func(event, delivery string, body []byte) (int, string) {
		t.Helper()
		return send(http.MethodPost, body, webhook.HeaderEvent, event, webhook.HeaderDelivery, delivery,
			webhook.HeaderSignature, webhook.Sign(testSecret, body))
	}

	// The bounties.
	rules := bid.Rules{Min: 200_000_000_000_000_000, Max: 500_000_000_000_000_000}
	expiration := time.Now().Add(2 * time.Minute)
	eicarURL := artifacts.URL + "/eicar.com"
	onDisk := psenginetest.File(t, "eicar.com", sample)
	bounty := func(id, uri string, opts ...psenginetest.BountyOption) []byte {
		t.Helper()
		opts = append([]psenginetest.BountyOption{psenginetest.WithID(id), psenginetest.WithURI(uri),
			psenginetest.WithResponseURL(responses.URL + "/answers/" + id), psenginetest.WithExpiration(expiration)}, opts...)
		body, err := json.Marshal(psenginetest.Bounty(sample, opts...))
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	assertion := bounty("1", eicarURL, psenginetest.WithRules(rules))
	vote := bounty("2", eicarURL, psenginetest.WithPhase(psengine.Arbitration))
	retried := bounty("3", eicarURL)
	repeated := bounty("4", eicarURL)
	local := bounty("5", "file://"+onDisk)

	// Every status code of the intake.
	big := bytes.Repeat([]byte(" "), webhook.DefaultMaxBody+1)
	for _, tt := range []struct {
		name string
		code int
		got  func() (int, string)
	}{
		{"GET of the root", 200, func() (int, string) { return send(http.MethodGet, nil) }},
		{"ping with an empty body", 200, func() (int, string) { return signedPost("ping", "p-1", nil) }},
		{"missing signature", 400, func() (int, string) {
			return send(http.MethodPost, assertion, webhook.HeaderEvent, "bounty", webhook.HeaderDelivery, "x-1")
		}},
		{"wrong signature", 401, func() (int, string) {
			return send(http.MethodPost, assertion, webhook.HeaderEvent, "bounty", webhook.HeaderDelivery, "x-2",
				webhook.HeaderSignature, webhook.Sign("not the secret", assertion))
		}},
		{"unsupported event", 400, func() (int, string) { return signedPost("transfer", "x-3", assertion) }},
		{"malformed bounty", 400, func() (int, string) { return signedPost("bounty", "x-4", []byte(`{"id":1,"artifact_type":"exe"}`)) }},
		{"body over the cap", 413, func() (int, string) { return signedPost("bounty", "x-5", big) }},
		{"assertion", 202, func() (int, string) { return signedPost("bounty", "d-1", assertion) }},
		{"arbitration", 202, func() (int, string) { return signedPost("bounty", "d-2", vote) }},
		{"answer refused twice", 202, func() (int, string) { return signedPost("bounty", "d-3", retried) }},
		{"delivery", 202, func() (int, string) { return signedPost("bounty", "d-4", repeated) }},
		{"same delivery again", 200, func() (int, string) { return signedPost("bounty", "d-4", repeated) }},
		{"file artifact", 202, func() (int, string) { return signedPost("bounty", "d-5", local) }},
	} {
		if code, body := tt.got(); code != tt.code {
			t.Errorf("%s: %d %s, want %d", tt.name, code, strings.TrimSpace(body), tt.code)
		}
	}

	// Every accepted bounty is answered.
	pending := map[string]bool{"1": true, "2": true, "3": true, "4": true, "5": true}
	for len(pending) > 0 {
		select {
		case id := <-recv.arrived:
			delete(pending, id)
		case <-time.After(60 * time.Second):
			t.Fatalf("bounties %v not answered within 60s", pending)
		}
	}

	// SIGTERM: a clean exit after draining.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("eicar webhook exited with %v after SIGTERM, want status 0", waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("eicar webhook still running 30s after SIGTERM")
	}
	if !strings.Contains(stderr.String(), "msg=stopped") {
		t.Errorf("no 'stopped' in the log")
	}

	// Exactly one answer per bounty, all after the process ended.
	recv.mu.Lock()
	defer recv.mu.Unlock()
	wantAttempts := map[string][]int{"1": {200}, "2": {200}, "3": {503, 503, 200}, "4": {200}, "5": {200}}
	if diff := cmp.Diff(wantAttempts, recv.attempts); diff != "" {
		t.Errorf("POSTs at response_url (-want +got):\n%s", diff)
	}
	decode := func(id string) wireAnswer {
		t.Helper()
		if len(recv.taken[id]) != 1 {
			t.Fatalf("bounty %s: %d answers taken, want 1", id, len(recv.taken[id]))
		}
		var a wireAnswer
		if err := json.Unmarshal([]byte(recv.taken[id][0]), &a); err != nil {
			t.Fatal(err)
		}
		return a
	}

	a := decode("1")
	if a.Verdict != "malicious" || a.Metadata.MalwareFamily != engine.Family || a.Bid == nil {
		t.Errorf("assertion %s, want malicious %s with a bid", recv.taken["1"][0], engine.Family)
	} else if n, err := json.Number(*a.Bid).Int64(); err != nil || !rules.Contains(n) {
		t.Errorf("bid %s: want a JSON integer within [%d, %d] (%v)", *a.Bid, rules.Min, rules.Max, err)
	}
	if v := decode("2"); v.Verdict != "malicious" || v.Bid != nil {
		t.Errorf("vote %s, want malicious and no bid", recv.taken["2"][0])
	}
	if a := decode("3"); a.Verdict != "malicious" {
		t.Errorf("retried answer %s, want malicious", recv.taken["3"][0])
	}
	decode("4")
	if f := decode("5"); f.Verdict != "unknown" || f.Bid == nil || string(*f.Bid) != "0" ||
		!cmp.Equal(f.Metadata.Comments, []string{psengine.CommentCannotFetch}) {
		t.Errorf("file:// bounty answered %s, want unknown, bid 0, %s", recv.taken["5"][0], psengine.CommentCannotFetch)
	}
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "psengine-") {
				t.Errorf("temp file %s left behind", e.Name())
			}
		}
	}
}
