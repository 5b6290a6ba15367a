package engine_test

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/examples/clamav/clamd"
	"github.com/polyswarm/psengine/examples/clamav/engine"
	"github.com/polyswarm/psengine/examples/clamav/internal/clamdtest"
	"github.com/polyswarm/psengine/psenginetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var fakeSigs = map[string][]byte{
	"Fake.Eicar":                   psenginetest.EICAR(),
	"Heuristics.Encrypted.Zip":     []byte("ENCRYPTED-ZIP"),
	"Win.Trojan.Fake-1.UNOFFICIAL": []byte("TROJAN-MARKER"),
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// newEngine makes an engine over s with test directories, shut down at the
// end of the test.
func newEngine(t *testing.T, s engine.Scanner, opts ...psengine.Option) *psengine.Engine {
	t.Helper()
	return psenginetest.Engine(t, s, append([]psengine.Option{psengine.WithName("clamav"), psengine.WithDirs(envdirs.Dirs{Temp: t.TempDir(), TempPrefix: "clamav-"})}, opts...)...)
}

func TestConformanceWithFake(t *testing.T) {
	var addr string // a worker child takes it from the parent's setup
	if !psenginetest.InChild() {
		addr = clamdtest.StartFake(t, clamdtest.FakeConfig{Signatures: fakeSigs}).Address.String()
	}
	psenginetest.TestScanner(t, engine.Scanner{Address: addr}, []psenginetest.Case{
		{Name: "eicar", Data: psenginetest.EICAR(), Want: psengine.Malicious},
		{Name: "clean", Data: []byte("hello, world\n"), Want: psengine.Benign},
		{Name: "multi-chunk", Data: append(randomBytes(200<<10), "TROJAN-MARKER"...), Want: psengine.Malicious},
		{Name: "url", URL: "http://example.invalid/", Want: psengine.Unknown},
	}, psengine.WithDirs(envdirs.Dirs{Temp: t.TempDir()}))
}

func TestAnswers(t *testing.T) {
	fake := clamdtest.StartFake(t, clamdtest.FakeConfig{Signatures: fakeSigs})
	e := newEngine(t, engine.Scanner{Address: fake.Address.String()})
	head := psengine.ScannerInfo{Version: engine.Version, VendorVersion: "1.4.6", SignaturesVersion: "42"}
	for _, tc := range []struct {
		name string
		data []byte
		want psengine.Analysis
	}{
		{"eicar", psenginetest.EICAR(), psengine.Analysis{Verdict: psengine.Malicious, Confidence: engine.FoundConfidence,
			Metadata: psengine.Metadata{MalwareFamily: "Fake.Eicar"}}},
		{"trojan", []byte("xx TROJAN-MARKER xx"), psengine.Analysis{Verdict: psengine.Malicious, Confidence: engine.FoundConfidence,
			Metadata: psengine.Metadata{MalwareFamily: "Win.Trojan.Fake-1.UNOFFICIAL"}}},
		{"heuristic", []byte("ENCRYPTED-ZIP"), psengine.Analysis{Verdict: psengine.Malicious, Confidence: engine.HeuristicConfidence,
			Metadata: psengine.Metadata{MalwareFamily: "Heuristics.Encrypted.Zip", Heuristic: true}}},
		{"clean", []byte("clean"), psengine.Analysis{Verdict: psengine.Benign, Confidence: engine.CleanConfidence}},
	} {
		res := psenginetest.Analyze(t, e, tc.data)
		if res.Err != nil {
			t.Errorf("%s: %v", tc.name, res.Err)
		}
		got := res.Analysis
		if got.Bid == 0 {
			t.Errorf("%s: no bid", tc.name)
		}
		if got.Metadata.Product != engine.Product || got.Metadata.Scanner.Environment.OperatingSystem == "" {
			t.Errorf("%s: head not stamped: %+v", tc.name, got.Metadata)
		}
		tc.want.Metadata.Scanner = head
		got.Bid, got.Metadata.Product, got.Metadata.Scanner.Environment = 0, "", psengine.Environment{}
		if diff := cmp.Diff(tc.want, got, psenginetest.AnalysisOptions); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	if res := psenginetest.Analyze(t, e, psenginetest.EICAR()); res.Analysis.Bid <= psenginetest.Analyze(t, e, []byte("clean")).Analysis.Bid {
		t.Errorf("a detection bids no more than a clean answer")
	}
}

func TestClassify(t *testing.T) {
	if got := engine.Classify(clamd.Reply{Status: clamd.StatusError, Message: "boom"}); got.Verdict != psengine.Unknown || got.Metadata.Error != "boom" {
		t.Errorf("ERROR reply classified %+v", got)
	}
	for name, want := range map[string]bool{
		"Heuristics.Encrypted.Zip": true, "BC.Heuristic.Trojan.X": true, "Heuristics.Limits.Exceeded.MaxFileSize": true,
		"Win.Trojan.Agent-1": false, "HeuristicsX.Y": false, "PUA.Win.Packer.Upx": false, "Eicar-Signature": false,
	} {
		if got := engine.IsHeuristic(name); got != want {
			t.Errorf("IsHeuristic(%q) = %v, want %v", name, got, want)
		}
	}
}

// One connection per worker: 40 scans on 3 workers use at most 3
// connections (plus the head's VERSION at start).
func TestOneConnectionPerWorker(t *testing.T) {
	fake := clamdtest.StartFake(t, clamdtest.FakeConfig{Signatures: fakeSigs})
	e := newEngine(t, engine.Scanner{Address: fake.Address.String()}, psengine.WithWorkers(3))
	var uris []string
	for i := range 40 {
		if i%2 == 0 {
			uris = append(uris, psenginetest.DataURI(psenginetest.EICAR()))
		} else {
			uris = append(uris, psenginetest.DataURI(randomBytes(100+i)))
		}
	}
	for i, res := range e.AnalyzeAll(context.Background(), uris) {
		want := psengine.Benign
		if i%2 == 0 {
			want = psengine.Malicious
		}
		if res.Err != nil || res.Analysis.Verdict != want {
			t.Errorf("artifact %d: %s (%v), want %s", i, res.Analysis.Verdict, res.Err, want)
		}
	}
	if fake.Scans() != 40 {
		t.Errorf("%d scans, want 40", fake.Scans())
	}
	if n := fake.Accepted(); n > 4 {
		t.Errorf("%d connections for 3 workers (and the head), want at most 4", n)
	}
}

// clamd drops every connection after two commands (VERSION and one scan):
// each next scan finds its connection dropped, dials again and retries,
// and every answer is still right.
func TestReconnectOnDroppedConnection(t *testing.T) {
	fake := clamdtest.StartFake(t, clamdtest.FakeConfig{Signatures: fakeSigs, CloseAfter: 2})
	var hookErrs []error
	var mu sync.Mutex
	e := newEngine(t, engine.Scanner{Address: fake.Address.String()}, psengine.OnError(func(_ context.Context, res psengine.Result) {
		err := res.Err
		mu.Lock()
		hookErrs = append(hookErrs, err)
		mu.Unlock()
	}))
	for i := range 5 {
		res := psenginetest.Analyze(t, e, psenginetest.EICAR())
		if res.Err != nil || res.Analysis.Verdict != psengine.Malicious {
			t.Errorf("scan %d: %s, %v", i, res.Analysis.Verdict, res.Err)
		}
	}
	if len(hookErrs) != 0 {
		t.Errorf("errors reported to the hooks: %v", hookErrs)
	}
	// 1 for the head, 1 for the worker's setup, then one per later scan.
	if n := fake.Accepted(); n != 6 {
		t.Errorf("%d connections, want 6", n)
	}
}

// Streamed (INSTREAM: a remote clamd, or Scanner.Stream), an artifact over
// clamd's StreamMaxLength is SKIPPED; its descriptor passed (FILDES), the
// stream limit does not apply and it is scanned.
func TestSizeLimitSkipped(t *testing.T) {
	fake := clamdtest.StartFake(t, clamdtest.FakeConfig{Signatures: fakeSigs, MaxStream: 64 << 10})
	e := newEngine(t, engine.Scanner{Address: fake.Address.String(), Stream: true})
	big := randomBytes(1 << 20)
	res := psenginetest.Analyze(t, e, big)
	if res.Err != nil {
		t.Errorf("size limit reported as an error: %v", res.Err)
	}
	a := res.Analysis
	if a.Verdict != psengine.Unknown || a.Bid != 0 || !cmp.Equal(a.Metadata.Comments, []string{psengine.CommentSkipped}) ||
		!strings.Contains(a.Metadata.Error, "StreamMaxLength") {
		t.Errorf("over the size limit: %+v, want SKIPPED naming StreamMaxLength", a)
	}
	// clamd closed that connection: the next scan dials again.
	if res := psenginetest.Analyze(t, e, psenginetest.EICAR()); res.Analysis.Verdict != psengine.Malicious {
		t.Errorf("scan after the size limit: %s, %v", res.Analysis.Verdict, res.Err)
	}
	if n := fake.FDScans(); n != 0 {
		t.Errorf("%d descriptors passed by a streaming engine", n)
	}

	passing := newEngine(t, engine.Scanner{Address: fake.Address.String()})
	if res := psenginetest.Analyze(t, passing, big); res.Err != nil || res.Analysis.Verdict != psengine.Benign {
		t.Errorf("over the stream limit, descriptor passed: %s, %v; want benign", res.Analysis.Verdict, res.Err)
	}
	if n := fake.FDScans(); n != 1 {
		t.Errorf("%d descriptors passed, want 1", n)
	}
}

func TestUnreachable(t *testing.T) {
	addr := "unix:" + clamdtest.ShortTempDir(t) + "/none.sock"
	var hookErrs []error
	var mu sync.Mutex
	e := newEngine(t, engine.Scanner{Address: addr}, psengine.WithWorkers(2), psengine.OnError(func(_ context.Context, res psengine.Result) {
		err := res.Err
		mu.Lock()
		hookErrs = append(hookErrs, err)
		mu.Unlock()
	}))
	uris := []string{psenginetest.DataURI(psenginetest.EICAR()), psenginetest.DataURI([]byte("x")), psenginetest.DataURI([]byte("y"))}
	for i, res := range e.AnalyzeAll(context.Background(), uris) {
		if !res.Answered || res.Analysis.Verdict != psengine.Unknown || !errors.Is(res.Err, clamd.ErrUnreachable) {
			t.Errorf("artifact %d: answered %v %s, err %v; want unknown with ErrUnreachable", i, res.Answered, res.Analysis.Verdict, res.Err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hookErrs) != len(uris) {
		t.Fatalf("%d errors reported to the hooks, want %d", len(hookErrs), len(uris))
	}
	for _, err := range hookErrs {
		if !errors.Is(err, clamd.ErrUnreachable) {
			t.Errorf("hook error %v does not wrap ErrUnreachable", err)
		}
	}
}

func TestBadAddressStopsStart(t *testing.T) {
	e := newEngine(t, engine.Scanner{Address: "clamd.example:3310"})
	err := e.Start(context.Background())
	if !errors.Is(err, clamd.ErrAddress) || !errors.Is(err, psengine.ErrSetup) {
		t.Errorf("Start = %v, want ErrSetup and clamd.ErrAddress", err)
	}
}

// Scan is callable alone: with a zero Env it uses a connection of its own;
// with an Env holding a session it uses that session's connection.
func TestScanOutsideEngine(t *testing.T) {
	fake := clamdtest.StartFake(t, clamdtest.FakeConfig{Signatures: fakeSigs})
	s := engine.Scanner{Address: fake.Address.String()}
	ctx := context.Background()
	a := psenginetest.Artifact(t, psenginetest.EICAR())
	got, err := s.Scan(ctx, psengine.Env{}, a)
	if err != nil || got.Verdict != psengine.Malicious || got.Metadata.MalwareFamily != "Fake.Eicar" {
		t.Fatalf("Scan with a zero Env: %+v, %v", got, err)
	}

	sess := engine.NewSession(fake.Address)
	env := engine.WithSession(psengine.Env{}, sess)
	before := fake.Accepted()
	for range 3 {
		if got, err := s.Scan(ctx, env, a); err != nil || got.Verdict != psengine.Malicious {
			t.Fatalf("Scan with a session: %+v, %v", got, err)
		}
	}
	if n := fake.Accepted() - before; n != 1 {
		t.Errorf("3 scans on one session used %d connections, want 1", n)
	}
	if err := sess.Close(); err != nil {
		t.Error(err)
	}
}

func TestCommandsWithFake(t *testing.T) {
	fake := clamdtest.StartFake(t, clamdtest.FakeConfig{Signatures: fakeSigs})
	e := newEngine(t, engine.Scanner{Address: fake.Address.String()})
	ctx := context.Background()
	out, err := e.Command(ctx, "info", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := engine.Info{Address: fake.Address.String(), Ping: "PONG", Version: "ClamAV 1.4.6/42/Thu Jan  1 00:00:00 2025",
		VendorVersion: "1.4.6", SignaturesVersion: "42", SignaturesDate: "Thu Jan  1 00:00:00 2025"}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("info (-want +got):\n%s", diff)
	}
	eicar := psenginetest.File(t, "eicar.com", psenginetest.EICAR())
	clean := psenginetest.File(t, "clean.txt", []byte("clean"))
	missing := clean + ".missing"
	out, err = e.Command(ctx, "scan_file", []string{eicar, missing, clean})
	if err != nil {
		t.Fatal(err)
	}
	reports := out.([]engine.FileReport)
	if len(reports) != 3 {
		t.Fatalf("scan_file: %d reports, want 3", len(reports))
	}
	if reports[1].Error == "" || reports[1].Result != "ERROR" {
		t.Errorf("missing file: %+v", reports[1])
	}
	reports[1].Error = ""
	wantReports := []engine.FileReport{
		{Path: eicar, Result: "FOUND", Signature: "Fake.Eicar", Verdict: psengine.Malicious},
		{Path: missing, Result: "ERROR", Verdict: psengine.Unknown},
		{Path: clean, Result: "OK", Verdict: psengine.Benign},
	}
	if diff := cmp.Diff(wantReports, reports); diff != "" {
		t.Errorf("scan_file (-want +got):\n%s", diff)
	}
	for _, args := range [][]string{nil, {"x"}} {
		name := "scan_file"
		if args != nil {
			name = "info"
		}
		if _, err := e.Command(ctx, name, args); err == nil {
			t.Errorf("%s %v: no error", name, args)
		}
	}
}

func TestCommandsUnreachable(t *testing.T) {
	e := newEngine(t, engine.Scanner{Address: "unix:" + clamdtest.ShortTempDir(t) + "/none.sock"})
	for _, args := range [][]string{{"info"}, {"scan_file", "/etc/hostname"}} {
		if _, err := e.Command(context.Background(), args[0], args[1:]); !errors.Is(err, clamd.ErrUnreachable) {
			t.Errorf("%v with clamd down: %v, want ErrUnreachable", args, err)
		}
	}
}

// Content only in memory (a data: URI) is passed as a memory file: clamd
// gets a descriptor, and no temp file is written.
func TestMemoryContentPassedAsDescriptor(t *testing.T) {
	fake := clamdtest.StartFake(t, clamdtest.FakeConfig{Signatures: fakeSigs})
	tmp := t.TempDir()
	e := psengine.New(engine.Scanner{Address: fake.Address.String()}, psengine.WithName("clamav"),
		psengine.WithDirs(envdirs.Dirs{Temp: tmp, TempPrefix: "clamav-"}))
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	res, err := e.Analyze(context.Background(), psenginetest.DataURI(psenginetest.EICAR()))
	if err != nil || res.Analysis.Verdict != psengine.Malicious {
		t.Fatalf("EICAR as a data: URI: %s, %v", res.Analysis.Verdict, err)
	}
	if n := fake.FDScans(); n != 1 {
		t.Errorf("%d descriptors passed, want 1", n)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("temp files written for content in memory: %v", left)
	}
}
