package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
)

// opsScanner answers malicious for content holding MALWARE, else benign;
// its health is a switch; its setup waits for setupDone when it is set.
type opsScanner struct {
	unhealthy atomic.Pointer[string]
	setupDone chan struct{}
	updates   atomic.Int64
	failNext  atomic.Bool
}

func (s *opsScanner) Scan(ctx context.Context, env psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	env.Logger().InfoContext(ctx, "scanning", "size", a.Size)
	data, err := a.Bytes()
	if err != nil {
		return psengine.Analysis{}, err
	}
	if bytes.Contains(data, []byte("MALWARE")) {
		return psengine.Analysis{Verdict: psengine.Malicious, Confidence: 0.9}, nil
	}
	return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.3}, nil
}

func (s *opsScanner) SetupEngine(ctx context.Context, env psengine.Env) (psengine.Env, error) {
	if s.setupDone != nil {
		select {
		case <-s.setupDone:
		case <-ctx.Done():
			return env, ctx.Err()
		}
	}
	return env, nil
}

func (s *opsScanner) CheckHealth(context.Context, psengine.Env) error {
	if why := s.unhealthy.Load(); why != nil {
		return errors.New(*why)
	}
	return nil
}

func (s *opsScanner) Update(_ context.Context, env psengine.Env) (psengine.Env, error) {
	if s.failNext.Swap(false) {
		return env, errors.New("the rules file /rules/bad.yar does not compile")
	}
	s.updates.Add(1)
	return env, nil
}

func (s *opsScanner) Describe(_ context.Context, env psengine.Env) (psengine.Metadata, error) {
	return psengine.Metadata{Product: "ops-test", Scanner: psengine.ScannerInfo{
		VendorVersion: "9.9", SignaturesVersion: "sig-" + strconv.FormatInt(s.updates.Load(), 10)}}, nil
}

// opsRun is a long-running command (webhook, worker) run in-process.
type opsRun struct {
	metrics string // base URL of /metrics, /healthz, /readyz
	lines   *bufio.Reader
	stderr  *psenginetest.SyncBuffer
	cancel  func()
	done    chan struct{} // closed when the command returned
	exit    int
}

// startOpsRun runs p with args and reads the "metrics on URL" line.
func startOpsRun(t *testing.T, p *Program, args ...string) *opsRun {
	t.Helper()
	out, stdout := io.Pipe()
	r := &opsRun{lines: bufio.NewReader(out), stderr: &psenginetest.SyncBuffer{}, done: make(chan struct{})}
	p.Stdout, p.Stderr = stdout, r.stderr
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		r.exit = p.Run(ctx, args)
		stdout.Close()
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("the command did not stop within 30s")
		}
	})
	r.metrics = r.line(t, "metrics on ")
	return r
}

// line reads the next stdout line, which must start with prefix, and
// returns the rest.
func (r *opsRun) line(t *testing.T, prefix string) string {
	t.Helper()
	l, err := r.lines.ReadString('\n')
	if err != nil {
		t.Fatalf("reading a %q line: %v; stderr:\n%s", prefix, err, r.stderr)
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(l), prefix)
	if !ok {
		t.Fatalf("line %q, want %q...", l, prefix)
	}
	return rest
}

// drain reads stdout's remaining lines in the background.
func (r *opsRun) drain() { go func() { _, _ = io.Copy(io.Discard, r.lines) }() }

// stop cancels the command and checks it exits 0 (within 30 s, a bound
// should it never stop).
func (r *opsRun) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.exit != 0 {
			t.Errorf("exit status %d, want 0; stderr:\n%s", r.exit, r.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the command did not stop within 30s of cancellation")
	}
}

// get GETs url and returns the status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	return do(t, http.MethodGet, url)
}

func do(t *testing.T, method, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// sample is one series of a Prometheus text scrape.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape GETs /metrics and parses the text format's samples.
func scrape(t *testing.T, base string) []sample {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	var out []sample
	for line := range strings.SplitSeq(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		s := sample{name: line[:i], labels: map[string]string{}, value: v}
		if j := strings.IndexByte(s.name, '{'); j >= 0 {
			for kv := range strings.SplitSeq(strings.TrimSuffix(s.name[j+1:], "}"), ",") {
				k, val, _ := strings.Cut(kv, "=")
				s.labels[k], _ = strconv.Unquote(val)
			}
			s.name = s.name[:j]
		}
		out = append(out, s)
	}
	return out
}

// value returns the value of the series named name with (at least) the
// labels given as pairs, and whether there is one.
func value(samples []sample, name string, labels ...string) (float64, bool) {
next:
	for _, s := range samples {
		if s.name != name {
			continue
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if s.labels[labels[i]] != labels[i+1] {
				continue next
			}
		}
		return s.value, true
	}
	return 0, false
}

// The acceptance test of the webhook's operation: /healthz while the
// engine starts, /readyz following the engine and its scanner's health,
// and the Prometheus scrape after real bounties (counts by verdict, the
// scan histogram, the deliveries, bytes fetched, the engine's head), with
// the webhook's own port answering only its routes.
func TestWebhookMetricsHealthReadiness(t *testing.T) {
	var delivered atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		delivered.Add(1)
	}))
	defer sink.Close()
	dir := t.TempDir()
	s := &opsScanner{setupDone: make(chan struct{})}
	p := &Program{Name: "opstest", Scanner: s,
		Getenv: func(k string) string { return map[string]string{"PSENGINE_HOME": dir, "LOG_LEVEL": "warn"}[k] }}
	r := startOpsRun(t, p, "webhook", "--insecure", "--allow-private", "--addr", "127.0.0.1", "-p", "0",
		"--metrics-addr", "127.0.0.1:0")

	// The engine is still in its setup: alive, not ready, no webhook yet.
	if code, body := get(t, r.metrics+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz during setup: %d %q, want 200 ok", code, body)
	}
	if code, body := get(t, r.metrics+"/readyz"); code != 503 || !strings.Contains(body, "not ready") {
		t.Errorf("/readyz during setup: %d %q, want 503 not ready", code, body)
	}
	close(s.setupDone)
	base := r.line(t, "listening on ")
	r.drain()
	if code, body := get(t, r.metrics+"/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz once started: %d %q, want 200 ok", code, body)
	}
	why := "the daemon does not answer PING"
	s.unhealthy.Store(&why)
	if code, body := get(t, r.metrics+"/readyz"); code != 503 || !strings.Contains(body, why) {
		t.Errorf("/readyz with an unhealthy scanner: %d %q, want 503 naming the reason", code, body)
	}
	s.unhealthy.Store(nil)
	if code, _ := get(t, r.metrics+"/readyz"); code != 200 {
		t.Errorf("/readyz healthy again: %d, want 200", code)
	}

	// The webhook's port: GET for PolySwarm's liveness on any path
	// (bounties are taken on any), and never the metrics.
	if code, _ := get(t, base+"/"); code != 200 {
		t.Errorf("webhook GET /: %d, want 200", code)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || strings.Contains(body, "# HELP") {
		t.Errorf("webhook GET /metrics: %d %q, want 200 liveness, not metrics", code, body)
	}
	// The metrics port: its routes, GET and HEAD only.
	if code, _ := get(t, r.metrics+"/"); code != 404 {
		t.Errorf("metrics port GET /: %d, want 404", code)
	}
	if code, _ := do(t, http.MethodPost, r.metrics+"/metrics"); code != 405 {
		t.Errorf("POST /metrics: %d, want 405", code)
	}
	if code, _ := do(t, http.MethodHead, r.metrics+"/healthz"); code != 200 {
		t.Errorf("HEAD /healthz: %d, want 200", code)
	}

	contents := []string{"MALWARE one", "MALWARE two", "clean"}
	var size int
	for i, c := range contents {
		size += len(c)
		b := psenginetest.Bounty([]byte(c), psenginetest.WithID(strconv.Itoa(100+i)),
			psenginetest.WithResponseURL(sink.URL+"/answer"), psenginetest.WithExpiration(time.Now().Add(time.Hour)))
		if code := postBounty(t, base, b, fmt.Sprintf("d-%d", i), ""); code != http.StatusAccepted {
			t.Fatalf("bounty %d: %d, want 202; stderr:\n%s", i, code, r.stderr)
		}
	}
	var m []sample
	psenginetest.Eventually(t, "3 deliveries counted", func() bool {
		m = scrape(t, r.metrics)
		n, _ := value(m, "psengine_deliveries_total", "result", "ok")
		return n == 3
	})
	if n := delivered.Load(); n != 3 {
		t.Errorf("the response URL received %d answers, want 3", n)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"psengine_bounties_total", []string{"verdict", "malicious", "outcome", "answered"}, 2},
		{"psengine_bounties_total", []string{"verdict", "benign", "outcome", "answered"}, 1},
		{"psengine_scan_duration_seconds_count", nil, 3},
		{"psengine_scan_duration_seconds_bucket", []string{"le", "+Inf"}, 3},
		{"psengine_fetch_bytes_total", nil, float64(size)},
		{"psengine_workers_busy", nil, 0},
		{"psengine_info", []string{"product", "ops-test", "vendor_version", "9.9", "signatures_version", "sig-0"}, 1},
	} {
		if got, ok := value(m, c.name, c.labels...); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if _, ok := value(m, "psengine_bounties_total", "verdict", "unknown"); ok {
		t.Error("an unknown verdict was counted; every bounty was answered by the scanner")
	}
	if n, ok := value(m, "psengine_scan_duration_seconds_bucket", "le", "60"); !ok || n != 3 {
		t.Errorf("histogram bucket le=60: %v %v, want 3 (the explicit boundaries)", n, ok)
	}
	if _, ok := value(m, "go_goroutines"); !ok {
		t.Error("no go_goroutines: the Go collector is not registered")
	}
	for _, s := range m {
		if _, ok := s.labels["otel_scope_name"]; ok {
			t.Errorf("%s carries otel_scope_* labels", s.name)
			break
		}
	}

	// Draining: not ready any more, still alive, until the process ends.
	r.stop(t)
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	if res, err := client.Get(r.metrics + "/healthz"); err == nil {
		res.Body.Close()
		t.Error("the metrics server still answers after the webhook stopped")
	}
}

// worker --metrics-addr: the bounties a worker answers from its queue are
// counted, readiness follows the engine, and --update-interval updates the
// definitions (counted by result; a failure keeps serving).
func TestWorkerMetricsAndPeriodicUpdates(t *testing.T) {
	backend := &fakeBackend{broker: broker.NewMemory(broker.MemoryConfig{})}
	defer backend.broker.Close()
	dir := t.TempDir()
	s := &opsScanner{}
	s.failNext.Store(true) // the first update fails
	p := &Program{Name: "opstest", Scanner: s, Backends: map[string]Backend{"fake": backend},
		Getenv: func(k string) string { return map[string]string{"PSENGINE_HOME": dir, "LOG_LEVEL": "warn"}[k] }}
	r := startOpsRun(t, p, "worker", "--backend", "fake", "--workers", "2", "--metrics-addr", "127.0.0.1:0",
		"--update-interval", "50ms")
	r.drain()
	psenginetest.Eventually(t, "ready", func() bool { code, _ := get(t, r.metrics+"/readyz"); return code == 200 })
	for i, c := range []string{"MALWARE", "clean", "clean again"} {
		b := psenginetest.Bounty([]byte(c), psenginetest.WithID(strconv.Itoa(i+1)))
		if err := backend.broker.Submit(context.Background(), broker.Job{ID: b.ID.String(), Bounty: b}); err != nil {
			t.Fatal(err)
		}
	}
	var m []sample
	psenginetest.Eventually(t, "3 bounties and 2 good updates counted", func() bool {
		m = scrape(t, r.metrics)
		mal, _ := value(m, "psengine_bounties_total", "verdict", "malicious", "outcome", "answered")
		ben, _ := value(m, "psengine_bounties_total", "verdict", "benign", "outcome", "answered")
		ok, _ := value(m, "psengine_updates_total", "result", "ok")
		return mal == 1 && ben == 2 && ok >= 2
	})
	if n, _ := value(m, "psengine_updates_total", "result", "failed"); n != 1 {
		t.Errorf("psengine_updates_total{result=failed} = %v, want 1", n)
	}
	// The head follows the updates: the info gauge names the new version.
	if _, ok := value(m, "psengine_info", "signatures_version", "sig-0"); ok {
		t.Errorf("psengine_info still names sig-0 after updates")
	}
	if !strings.Contains(r.stderr.String(), "bad.yar") {
		t.Errorf("the failed update was not logged naming the file; stderr:\n%s", r.stderr)
	}
	r.stop(t)
}

func TestOpsUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"webhook", "--metrics-addr", "nope"}, "--metrics-addr"},
		{[]string{"webhook", "--otlp-endpoint", "localhost:4318"}, "--otlp-endpoint"},
		{[]string{"webhook", "--update-interval", "-1s"}, "--update-interval must not be negative"},
		{[]string{"webhook", "--backend", "fake", "--update-interval", "1h"}, "--update-interval applies to --backend local or process only"},
		{[]string{"worker", "--backend", "fake", "--metrics-addr", "127.0.0.1"}, "--metrics-addr"},
		{[]string{"update", "extra"}, "update takes no arguments"},
	} {
		var stderr bytes.Buffer
		p := &Program{Name: "test", Scanner: &opsScanner{}, Stderr: &stderr, Stdout: io.Discard,
			Backends: map[string]Backend{"fake": &fakeBackend{}},
			Getenv: func(k string) string {
				if k == "PSENGINE_WEBHOOK_SECRET" {
					return "s"
				}
				return ""
			}}
		if code := p.Run(context.Background(), tt.args); code != 2 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%q: status %d, stderr %q; want 2 and %q", tt.args, code, stderr.String(), tt.want)
		}
	}
}
