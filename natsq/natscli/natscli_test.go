package natscli_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/cli"
	"github.com/polyswarm/psengine/examples/eicar/engine"
	"github.com/polyswarm/psengine/natsq"
	"github.com/polyswarm/psengine/natsq/embedded"
	"github.com/polyswarm/psengine/natsq/natscli"
	"github.com/polyswarm/psengine/psenginetest"
	"go.uber.org/goleak"
)

// nats.go v1.55.0 may leave its async-publish status goroutine blocked on
// a nil channel when a connection closes right after an object store put
// (see natsq's helpers_test.go); it is the client library's.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect"))
}

func program(t *testing.T, stdin string) (*cli.Program, *psenginetest.SyncBuffer, *psenginetest.SyncBuffer) {
	home := t.TempDir()
	out, errs := &psenginetest.SyncBuffer{}, &psenginetest.SyncBuffer{}
	return &cli.Program{
		Name:     "eicar",
		Scanner:  engine.Scanner{},
		Backends: map[string]cli.Backend{"nats": natscli.Backend{}},
		Stdin:    strings.NewReader(stdin),
		Stdout:   out,
		Stderr:   errs,
		Getenv: func(k string) string {
			return map[string]string{"LOG_LEVEL": "debug", "PSENGINE_HOME": home, "PSENGINE_RUNTIME_DIR": home}[k]
		},
	}, out, errs
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWorkerAndAnalyzeOverNATS(t *testing.T) {
	srv, err := embedded.Start(embedded.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	url := srv.ClientURL()
	dir := t.TempDir()
	eicarFile := writeFile(t, dir, "eicar.com", psenginetest.EICAR())
	textFile := writeFile(t, dir, "notes.txt", []byte("hello"))

	w, _, werr := program(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	workerDone := make(chan int, 1)
	go func() {
		workerDone <- w.Run(ctx, []string{"worker", "--backend", "nats", "--nats-url", url, "--nats-prefix", "cli", "--workers", "2"})
	}()

	a, out, aerr := program(t, string(psenginetest.EICAR()))
	code := a.Run(context.Background(), []string{"analyze", "--backend", "nats", "--nats-url", url, "--nats-prefix", "cli",
		textFile, eicarFile, "-", psenginetest.DataURI([]byte("plain"))})
	if code != 0 {
		t.Errorf("analyze exit %d; stderr:\n%s", code, aerr.String())
	}
	want := strings.Join([]string{
		textFile + ": unknown",
		eicarFile + ": malicious EICAR-Test-File bid=953125000000000000",
		"-: malicious EICAR-Test-File bid=953125000000000000",
		psenginetest.DataURI([]byte("plain")) + ": unknown",
	}, "\n") + "\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("analyze output (-want +got):\n%s", diff)
	}

	cancel()
	if code := <-workerDone; code != 0 {
		t.Errorf("worker exit %d; stderr:\n%s", code, werr.String())
	}
	if !strings.Contains(werr.String(), "stopping: running scans may finish") {
		t.Errorf("worker did not log a graceful stop:\n%s", werr.String())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"worker"},
		{"worker", "--backend", "carrier-pigeon"},
		{"worker", "--backend", "nats", "extra"},
		{"analyze", "--backend", "carrier-pigeon", "x"},
	} {
		p, _, errs := program(t, "")
		if code := p.Run(context.Background(), args); code != 2 {
			t.Errorf("%q: exit %d, want 2; stderr:\n%s", args, code, errs.String())
		}
	}
}

// With --nats-embedded the queue lives in the process's own file store: a
// bounty queued by one process is answered by a worker started later on
// the same directory.
func TestEmbeddedQueueOutlivesItsProcess(t *testing.T) {
	store := t.TempDir()
	file := writeFile(t, t.TempDir(), "eicar.com", psenginetest.EICAR())
	a, _, aerr := program(t, "")
	code := a.Run(context.Background(), []string{"analyze", "--backend", "nats", "--nats-embedded", store, "--nats-wait", "200ms", file})
	if code != 1 || !strings.Contains(aerr.String(), "no answer") {
		t.Fatalf("analyze with no worker: exit %d, stderr:\n%s", code, aerr.String())
	}

	w, _, werr := program(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- w.Run(ctx, []string{"worker", "--backend", "nats", "--nats-embedded", store, "--nats-ack-wait", "2s"})
	}()
	waitForLog(t, werr, "bounty answered")
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("worker exit %d:\n%s", code, werr.String())
	}

	srv, err := embedded.Start(embedded.Options{StoreDir: store})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(context.Background(), "psengine_jobs")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Errorf("%d jobs still queued", info.State.Msgs)
	}
}

// slowScanner answers benign after 100 ms.
type slowScanner struct{}

func (slowScanner) Scan(ctx context.Context, _ psengine.Env, _ psengine.Artifact) (psengine.Analysis, error) {
	select {
	case <-time.After(100 * time.Millisecond):
		return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.5}, nil
	case <-ctx.Done():
		return psengine.Analysis{}, ctx.Err()
	}
}

// A batch of more work than one bounty's lifetime (90 scans of 100 ms on
// one worker, bounties living --timeout 2s plus the 5 s delivery margin),
// larger than the queue can take (capacity 4), is fully answered: each
// bounty is forged with its own expiration as the window has room, and a
// full queue is waited for.
func TestAnalyzeBatchOutlastsOneExpiration(t *testing.T) {
	srv, err := embedded.Start(embedded.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	url := srv.ClientURL()
	backend := map[string]cli.Backend{"nats": natscli.Backend{Config: natsq.Config{Capacity: 4}}}

	w, _, werr := program(t, "")
	w.Scanner, w.Backends = slowScanner{}, backend
	ctx, cancel := context.WithCancel(context.Background())
	workerDone := make(chan int, 1)
	go func() {
		workerDone <- w.Run(ctx, []string{"worker", "--backend", "nats", "--nats-url", url, "--nats-prefix", "batch", "--workers", "1"})
	}()
	defer func() {
		cancel()
		if code := <-workerDone; code != 0 {
			t.Errorf("worker exit %d; stderr:\n%s", code, werr.String())
		}
	}()

	dir := t.TempDir()
	var want strings.Builder
	args := []string{"analyze", "--backend", "nats", "--nats-url", url, "--nats-prefix", "batch",
		"--timeout", "2s", "--in-flight", "8", dir}
	for i := range 90 {
		p := writeFile(t, dir, fmt.Sprintf("f%02d", i), []byte(fmt.Sprintf("sample %d", i)))
		fmt.Fprintf(&want, "%s: benign bid=531250000000000000\n", p)
	}
	a, out, aerr := program(t, "")
	a.Scanner, a.Backends = slowScanner{}, backend
	start := time.Now()
	if code := a.Run(context.Background(), append(args, "--summary-json", filepath.Join(dir, "..", "summary.json"))); code != 0 {
		t.Fatalf("analyze exit %d; stderr:\n%s", code, aerr.String())
	}
	if took := time.Since(start); took < 7*time.Second {
		t.Errorf("90 scans of 100 ms on one worker took %v: less than a bounty's lifetime", took)
	}
	if diff := cmp.Diff(want.String(), out.String()); diff != "" {
		t.Errorf("analyze output (-want +got):\n%s\nworker:\n%s", diff, werr.String())
	}
	if !strings.Contains(aerr.String(), "the queue is full: waiting for room") {
		t.Errorf("the queue never refused a bounty (capacity 4, 8 in flight): the test tests less than it says:\n%s", aerr.String())
	}
	if strings.Contains(aerr.String(), "expired in the queue") || strings.Contains(werr.String(), "expired") {
		t.Errorf("a bounty expired in the queue; analyze:\n%s\nworker:\n%s", aerr.String(), werr.String())
	}
	if !strings.Contains(aerr.String(), "verdicts: benign 90") {
		t.Errorf("summary:\n%s", aerr.String())
	}
}
