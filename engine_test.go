package psengine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/google/go-cmp/cmp"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/bid"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/fetch"
	"github.com/polyswarm/psengine/pipeline"
	"github.com/polyswarm/psengine/psenginetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testDirs keeps engines in tests away from the real environment.
func testDirs(t *testing.T) psengine.Option {
	t.Helper()
	d := t.TempDir()
	return psengine.WithDirs(envdirs.Dirs{Home: d, Temp: d})
}

func newEngine(t *testing.T, s psengine.Scanner, opts ...psengine.Option) *psengine.Engine {
	t.Helper()
	return psenginetest.Engine(t, s, append([]psengine.Option{psengine.WithGetenv(func(string) string { return "" })}, opts...)...)
}

// marker is a scanner that finds "MALWARE" in the artifact.
var marker = psengine.ScannerFunc(func(ctx context.Context, env psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	b, err := a.Bytes()
	if err != nil {
		return psengine.Analysis{}, err
	}
	if strings.Contains(string(b), "MALWARE") {
		return psengine.Analysis{Verdict: psengine.Malicious, Confidence: 0.5, Metadata: psengine.Metadata{MalwareFamily: "Test.Marker"}}, nil
	}
	return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.25}, nil
})

func TestAnalyzeDataURI(t *testing.T) {
	e := newEngine(t, marker, psengine.WithProduct("Marker Engine"))
	data := []byte("this is MALWARE")
	res, err := e.Analyze(context.Background(), psenginetest.DataURI(data))
	if err != nil {
		t.Fatal(err)
	}
	rules := bid.DefaultRules
	want := psengine.Analysis{
		Verdict:    psengine.Malicious,
		Confidence: 0.5,
		Bid:        bid.Linear(rules, 0.5),
		Metadata: psengine.Metadata{
			MalwareFamily: "Test.Marker",
			Product:       "marker-engine",
			Scanner:       psengine.ScannerInfo{Environment: res.Analysis.Metadata.Scanner.Environment},
		},
	}
	if diff := cmp.Diff(want, res.Analysis, psenginetest.AnalysisOptions); diff != "" {
		t.Errorf("analysis (-want +got):\n%s", diff)
	}
	if env := res.Analysis.Metadata.Scanner.Environment; env.OperatingSystem == "" || env.OperatingSystem != strings.ToLower(env.OperatingSystem) || env.Architecture == "" {
		t.Errorf("environment not stamped or not lowercase: %+v", env)
	}
	if res.Bounty.SHA256 != psenginetest.SHA256(data) || res.Bounty.Rules != rules || !res.Answered {
		t.Errorf("bounty %+v", res.Bounty)
	}
}

func TestAnalyzeBountyChecksumMismatch(t *testing.T) {
	var hookErr atomic.Value
	e := newEngine(t, marker, psengine.OnError(func(_ context.Context, res psengine.Result) { hookErr.Store(res.Err) }))
	b := psenginetest.Bounty([]byte("MALWARE"), psenginetest.WithSHA256(strings.Repeat("ab", 32)))
	res, err := e.AnalyzeBounty(context.Background(), b)
	if !errors.Is(err, psengine.ErrFetch) || !errors.Is(err, fetch.ErrChecksum) {
		t.Fatalf("err = %v, want ErrFetch and fetch.ErrChecksum", err)
	}
	if !res.Answered || res.Analysis.Verdict != psengine.Unknown || res.Analysis.Bid != 0 ||
		len(res.Analysis.Metadata.Comments) != 1 || res.Analysis.Metadata.Comments[0] != psengine.CommentCannotFetch ||
		res.Analysis.Metadata.Error == "" {
		t.Errorf("answer %+v, want unknown SKIPPED:CANNOT-FETCH with the reason", res.Analysis)
	}
	if got, _ := hookErr.Load().(error); !errors.Is(got, fetch.ErrChecksum) {
		t.Errorf("error hook got %v", got)
	}
}

func TestRemotePolicyRefusesFile(t *testing.T) {
	e := newEngine(t, marker)
	path := psenginetest.File(t, "a", []byte("MALWARE"))
	res, err := e.AnalyzeBounty(context.Background(), psenginetest.Bounty(nil, psenginetest.WithURI("file://"+path)))
	if !errors.Is(err, fetch.ErrNotAllowed) || res.Analysis.Metadata.Comments[0] != psengine.CommentCannotFetch {
		t.Fatalf("file:// bounty under the remote policy: err %v, answer %+v", err, res.Analysis)
	}
}

func TestFailuresAnswerUnknown(t *testing.T) {
	tests := []struct {
		name    string
		scanner psengine.ScannerFunc
		kind    error
	}{
		{"panic", func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
			panic("scanner bug")
		}, psengine.ErrScan},
		{"error", func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
			return psengine.Analysis{}, errors.New("engine crashed")
		}, psengine.ErrScan},
		{"invalid verdict", func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
			return psengine.Analysis{Verdict: "evil"}, nil
		}, psengine.ErrInvalidAnalysis},
		{"confidence out of range", func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
			return psengine.Analysis{Verdict: psengine.Malicious, Confidence: 7}, nil
		}, psengine.ErrInvalidAnalysis},
		{"bid on unknown", func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
			return psengine.Analysis{Verdict: psengine.Unknown, Bid: 5}, nil
		}, psengine.ErrInvalidAnalysis},
		{"capitalised product", func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
			return psengine.Analysis{Verdict: psengine.Benign, Metadata: psengine.Metadata{Product: "Big Engine"}}, nil
		}, psengine.ErrInvalidAnalysis},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hooked []error
			var mu sync.Mutex
			e := newEngine(t, tt.scanner, psengine.OnError(func(_ context.Context, res psengine.Result) {
				err := res.Err
				mu.Lock()
				hooked = append(hooked, err)
				mu.Unlock()
			}), psengine.OnSuccess(func(context.Context, psengine.Result) {
				t.Error("success hook called for a failure")
			}))
			b := psenginetest.Bounty([]byte("x"))
			res, err := e.AnalyzeBounty(context.Background(), b)
			if !errors.Is(err, tt.kind) {
				t.Fatalf("err = %v, want %v", err, tt.kind)
			}
			if !res.Answered || res.Analysis.Verdict != psengine.Unknown || res.Analysis.Bid != 0 {
				t.Errorf("answer %+v, want unknown with bid 0", res.Analysis)
			}
			if verr := psengine.Validate(b, res.Analysis); verr != nil {
				t.Errorf("fallback answer invalid: %v", verr)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(hooked) != 1 || !errors.Is(hooked[0], tt.kind) {
				t.Errorf("error hooks got %v", hooked)
			}
			if tt.name == "panic" {
				var pe *psengine.PanicError
				if !errors.As(err, &pe) || len(pe.Stack) == 0 {
					t.Errorf("panic not reported as *PanicError with a stack: %v", err)
				}
			}
		})
	}
}

// hungScanner ignores its ctx until released is closed.
func hungScanner(released <-chan struct{}) psengine.Scanner {
	return psengine.ScannerFunc(func(ctx context.Context, _ psengine.Env, _ psengine.Artifact) (psengine.Analysis, error) {
		<-released // ignores ctx entirely
		return psengine.Analysis{Verdict: psengine.Malicious}, nil
	})
}

// A scan that ignores its ctx is walked away from ScanGrace after its
// deadline: its bounty is answered unknown (ErrTimeout), delivered once and
// reported, the call returns, and the worker (the only one) answers the
// next bounty with a fresh worker Env while the hung scan goes on. When the
// hung scan returns, it tears down the worker Env it had.
func TestHungScanWalkedAway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		released := make(chan struct{})
		var delivered []psengine.Answer
		var mu sync.Mutex
		deliverer := psengine.DelivererFunc(func(_ context.Context, _ psengine.Bounty, a psengine.Answer) error {
			mu.Lock()
			delivered = append(delivered, a)
			mu.Unlock()
			return nil
		})
		reported := make(chan error, 2)
		var setups, teardowns atomic.Int32
		s := &lifecycleScanner{
			Scanner: psengine.ScannerFunc(func(ctx context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
				if b, _ := a.Bytes(); string(b) == "hang" {
					<-released // ignores ctx entirely
				}
				return psengine.Analysis{Verdict: psengine.Malicious}, nil
			}),
			setups: &setups, teardowns: &teardowns,
		}
		e := psengine.New(s, testDirs(t), psengine.WithTimeout(time.Second), psengine.WithDeliverer(deliverer),
			psengine.OnError(func(_ context.Context, res psengine.Result) { reported <- res.Err }))
		start := time.Now()
		res, err := e.AnalyzeBounty(context.Background(), psenginetest.Bounty([]byte("hang"), psenginetest.WithResponseURL("https://example.test/answer")))
		if !errors.Is(err, psengine.ErrTimeout) || !errors.Is(err, pipeline.ErrAbandoned) {
			t.Errorf("err = %v, want ErrTimeout and pipeline.ErrAbandoned", err)
		}
		if took, want := time.Since(start), time.Second+psengine.ScanGrace; took != want {
			t.Errorf("answered after %v, want the 1s timeout plus ScanGrace (%v)", took, want)
		}
		if !res.Answered || !res.Delivered || res.Analysis.Verdict != psengine.Unknown {
			t.Errorf("result %+v, want a delivered unknown answer", res)
		}
		if err := <-reported; !errors.Is(err, psengine.ErrTimeout) {
			t.Errorf("reported %v, want ErrTimeout", err)
		}

		// The hung scan still runs; the one worker answers the next bounty.
		res, err = e.AnalyzeBounty(context.Background(), psenginetest.Bounty([]byte("quick")))
		if err != nil || res.Analysis.Verdict != psengine.Malicious {
			t.Errorf("next bounty: %v, %+v; want answered while the hung scan runs", err, res.Analysis)
		}
		if n := setups.Load(); n != 2 {
			t.Errorf("%d worker setups, want 2: the hung scan keeps the first worker Env", n)
		}
		if n := teardowns.Load(); n != 0 {
			t.Errorf("%d teardowns while the hung scan still holds its Env", n)
		}

		close(released)
		synctest.Wait()
		if n := teardowns.Load(); n != 1 {
			t.Errorf("%d teardowns after the hung scan returned, want 1 (its own Env)", n)
		}
		if err := e.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(delivered) != 1 || delivered[0].Verdict != psengine.Unknown || len(reported) != 0 {
			t.Errorf("delivered %+v, %d more errors reported; want one unknown answer, no more", delivered, len(reported))
		}
		if n := teardowns.Load(); n != 2 {
			t.Errorf("%d teardowns after Shutdown, want 2", n)
		}
	})
}

// lifecycleScanner counts worker setups and teardowns.
type lifecycleScanner struct {
	psengine.Scanner
	setups, teardowns *atomic.Int32
}

func (s *lifecycleScanner) SetupWorker(_ context.Context, env psengine.Env) (psengine.Env, error) {
	s.setups.Add(1)
	return env, nil
}

func (s *lifecycleScanner) TeardownWorker(context.Context, psengine.Env) error {
	s.teardowns.Add(1)
	return nil
}

// A scan calling runtime.Goexit (t.FailNow does) is a failed scan like a
// panic: answered unknown, and the worker goes on.
func TestGoexitInScan(t *testing.T) {
	s := psengine.ScannerFunc(func(_ context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
		if b, _ := a.Bytes(); string(b) == "exit" {
			runtime.Goexit()
		}
		return psengine.Analysis{Verdict: psengine.Benign}, nil
	})
	e := newEngine(t, s)
	res, err := e.AnalyzeBounty(context.Background(), psenginetest.Bounty([]byte("exit")))
	if !errors.Is(err, psengine.ErrScan) || !errors.Is(err, pipeline.ErrGoexit) || !res.Answered || res.Analysis.Verdict != psengine.Unknown {
		t.Fatalf("Goexit in a scan: %v, %+v; want an unknown answer for ErrScan and ErrGoexit", err, res.Analysis)
	}
	if res, err := e.AnalyzeBounty(context.Background(), psenginetest.Bounty([]byte("fine"))); err != nil || res.Analysis.Verdict != psengine.Benign {
		t.Fatalf("next bounty: %v, %+v", err, res.Analysis)
	}
}

// A context a scanner derives from its scan ctx, with a later deadline of
// its own, ends at the scan's deadline with context.DeadlineExceeded (and
// ErrTimeout as its cause), as the standard library's contexts do.
func TestDerivedContextAtDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var err, cause error
		var deadline time.Time
		s := psengine.ScannerFunc(func(ctx context.Context, _ psengine.Env, _ psengine.Artifact) (psengine.Analysis, error) {
			ctx, cancel := context.WithTimeout(ctx, time.Hour)
			defer cancel()
			deadline, _ = ctx.Deadline()
			<-ctx.Done()
			err, cause = ctx.Err(), context.Cause(ctx)
			return psengine.Analysis{}, ctx.Err()
		})
		e := newEngine(t, s, psengine.WithTimeout(time.Second))
		start := time.Now()
		if _, aerr := e.AnalyzeBounty(context.Background(), psenginetest.Bounty([]byte("x"))); !errors.Is(aerr, psengine.ErrTimeout) {
			t.Errorf("AnalyzeBounty = %v, want ErrTimeout", aerr)
		}
		if err != context.DeadlineExceeded || cause != psengine.ErrTimeout {
			t.Errorf("derived ctx: Err() = %v, Cause = %v; want DeadlineExceeded, ErrTimeout", err, cause)
		}
		if want := start.Add(time.Second); !deadline.Equal(want) {
			t.Errorf("derived ctx deadline %v, want the scan's %v", deadline, want)
		}
	})
}

// Shutdown does not wait forever for a scan that ignores its cancellation:
// ScanGrace after its deadline it reports the bounty, leaves that worker
// and the engine un-torn-down, and says so.
func TestShutdownLeavesHungScan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		released := make(chan struct{})
		reported := make(chan error, 1)
		var tornDown atomic.Int32
		s := teardownScanner{Scanner: hungScanner(released), n: &tornDown}
		e := psengine.New(s, testDirs(t), psengine.OnError(func(_ context.Context, res psengine.Result) { reported <- res.Err }))
		if err := e.Submit(context.Background(), psenginetest.Bounty([]byte("x"), psenginetest.WithExpiration(time.Now().Add(time.Hour)))); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		err := e.Shutdown(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "still running") {
			t.Errorf("Shutdown = %v, want the deadline error and the running scan", err)
		}
		if took, want := time.Since(start), 10*time.Second+psengine.ScanGrace; took != want {
			t.Errorf("Shutdown took %v, want %v", took, want)
		}
		if err := <-reported; !errors.Is(err, psengine.ErrShutdown) {
			t.Errorf("reported %v, want ErrShutdown", err)
		}
		if n := tornDown.Load(); n != 0 {
			t.Errorf("%d teardowns ran while a scan still runs", n)
		}
		close(released) // the consumer ends with the scan
	})
}

// teardownScanner counts its teardowns.
type teardownScanner struct {
	psengine.Scanner
	n *atomic.Int32
}

func (s teardownScanner) TeardownWorker(context.Context, psengine.Env) error {
	s.n.Add(1)
	return nil
}

func (s teardownScanner) TeardownEngine(context.Context, psengine.Env) error {
	s.n.Add(1)
	return nil
}

// At its deadline a scan's ctx reports context.DeadlineExceeded, with
// ErrTimeout as its cause.
func TestScanContextAtDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var err, cause error
		s := psengine.ScannerFunc(func(ctx context.Context, _ psengine.Env, _ psengine.Artifact) (psengine.Analysis, error) {
			<-ctx.Done()
			err, cause = ctx.Err(), context.Cause(ctx)
			return psengine.Analysis{}, ctx.Err()
		})
		e := newEngine(t, s, psengine.WithTimeout(time.Second))
		if _, aerr := e.AnalyzeBounty(context.Background(), psenginetest.Bounty([]byte("x"))); !errors.Is(aerr, psengine.ErrTimeout) {
			t.Errorf("AnalyzeBounty = %v, want ErrTimeout", aerr)
		}
		if err != context.DeadlineExceeded || cause != psengine.ErrTimeout {
			t.Errorf("ctx.Err() = %v, Cause = %v; want DeadlineExceeded, ErrTimeout", err, cause)
		}
	})
}

// Each scan ends exactly at its own deadline, later or earlier than the
// last one's on the same worker.
func TestDeadlinesAcrossBounties(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := psengine.ScannerFunc(func(ctx context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
			if b, _ := a.Bytes(); string(b) == "wait" {
				<-ctx.Done()
				return psengine.Analysis{}, ctx.Err()
			}
			return psengine.Analysis{Verdict: psengine.Unknown}, nil
		})
		e := newEngine(t, s, psengine.WithDeliveryMargin(5*time.Second))
		for _, c := range []struct {
			content string
			expires time.Duration
			want    time.Duration // how long the call takes
		}{
			{"quick", 20 * time.Second, 0},
			{"wait", time.Minute, 55 * time.Second},     // after the quick one's deadline
			{"wait", 10 * time.Second, 5 * time.Second}, // before the timer's last setting
			{"wait", time.Hour, time.Hour - 5*time.Second},
		} {
			start := time.Now()
			res, err := e.AnalyzeBounty(context.Background(), psenginetest.Bounty([]byte(c.content), psenginetest.WithExpiration(start.Add(c.expires))))
			if took := time.Since(start); took != c.want {
				t.Errorf("%s expiring in %v: answered after %v, want %v", c.content, c.expires, took, c.want)
			}
			if c.want > 0 && (!errors.Is(err, psengine.ErrTimeout) || res.Analysis.Verdict != psengine.Unknown) {
				t.Errorf("%s expiring in %v: %v, %+v; want an unknown answer for ErrTimeout", c.content, c.expires, err, res.Analysis)
			}
		}
	})
}

func TestDeadlineLeavesDeliveryMargin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var deadline time.Time
		s := psengine.ScannerFunc(func(ctx context.Context, _ psengine.Env, _ psengine.Artifact) (psengine.Analysis, error) {
			deadline, _ = ctx.Deadline()
			return psengine.Analysis{Verdict: psengine.Unknown}, nil
		})
		e := psengine.New(s, testDirs(t), psengine.WithDeliveryMargin(3*time.Second))
		exp := time.Now().Add(time.Minute)
		if _, err := e.AnalyzeBounty(context.Background(), psenginetest.Bounty([]byte("x"), psenginetest.WithExpiration(exp))); err != nil {
			t.Fatal(err)
		}
		if want := exp.Add(-3 * time.Second); !deadline.Equal(want) {
			t.Errorf("scan deadline %v, want %v", deadline, want)
		}
		_ = e.Shutdown(context.Background())
	})
}

func TestExpiredBountyDiscarded(t *testing.T) {
	var scanned atomic.Bool
	s := psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
		scanned.Store(true)
		return psengine.Analysis{Verdict: psengine.Unknown}, nil
	})
	var hooked atomic.Value
	e := newEngine(t, s, psengine.OnError(func(_ context.Context, res psengine.Result) { hooked.Store(res.Err) }))
	res, err := e.AnalyzeBounty(context.Background(), psenginetest.Bounty([]byte("x"), psenginetest.WithExpiration(time.Now().Add(-time.Second))))
	if !errors.Is(err, psengine.ErrExpired) || res.Answered || scanned.Load() {
		t.Fatalf("expired bounty: err %v, answered %v, scanned %v", err, res.Answered, scanned.Load())
	}
	if got, _ := hooked.Load().(error); !errors.Is(got, psengine.ErrExpired) {
		t.Errorf("error hook got %v", got)
	}

	scanned.Store(false)
	keep := newEngine(t, s, psengine.WithDiscardExpired(false))
	if res, err := keep.AnalyzeBounty(context.Background(), psenginetest.Bounty([]byte("x"), psenginetest.WithExpiration(time.Now().Add(-time.Second)))); !res.Answered || err != nil || !scanned.Load() {
		t.Errorf("WithDiscardExpired(false): answered %v, scanned %v, err %v", res.Answered, scanned.Load(), err)
	}
}

func TestArbitrationVoteHasNoBid(t *testing.T) {
	e := newEngine(t, marker)
	res, err := e.AnalyzeBounty(context.Background(), psenginetest.Bounty([]byte("MALWARE"), psenginetest.WithPhase(psengine.Arbitration)))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(res.Answer())
	var m map[string]any
	_ = json.Unmarshal(out, &m)
	if _, ok := m["bid"]; ok || m["verdict"] != "malicious" {
		t.Errorf("vote %s has a bid key or wrong verdict", out)
	}
}

// countingScanner records the worker setup calls and which worker Env each
// scan saw.
type countingScanner struct {
	setups, teardowns, engineSetups atomic.Int32
	mu                              sync.Mutex
	seen                            map[int]bool
}

var workerKey = psengine.NewKey[int]("worker")
var tableKey = psengine.NewKey[map[string]bool]("table")

func (c *countingScanner) SetupEngine(_ context.Context, env psengine.Env) (psengine.Env, error) {
	c.engineSetups.Add(1)
	return tableKey.With(env, map[string]bool{"MALWARE": true}), nil
}

func (c *countingScanner) SetupWorker(_ context.Context, env psengine.Env) (psengine.Env, error) {
	return workerKey.With(env, int(c.setups.Add(1))), nil
}

func (c *countingScanner) TeardownWorker(context.Context, psengine.Env) error {
	c.teardowns.Add(1)
	return nil
}

func (c *countingScanner) Scan(_ context.Context, env psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	id := workerKey.Must(env)
	table := tableKey.Must(env)
	c.mu.Lock()
	c.seen[id] = true
	c.mu.Unlock()
	b, _ := a.Bytes()
	if table[string(b)] {
		return psengine.Analysis{Verdict: psengine.Malicious}, nil
	}
	return psengine.Analysis{Verdict: psengine.Benign}, nil
}

func TestSetupOncePerEngineAndWorker(t *testing.T) {
	s := &countingScanner{seen: map[int]bool{}}
	e := psengine.New(s, testDirs(t), psengine.WithWorkers(3))
	uris := make([]string, 60)
	for i := range uris {
		uris[i] = psenginetest.DataURI(fmt.Appendf(nil, "%d", i))
	}
	uris[7] = psenginetest.DataURI([]byte("MALWARE"))
	results := e.AnalyzeAll(context.Background(), uris)
	for i, r := range results {
		want := psengine.Benign
		if i == 7 {
			want = psengine.Malicious
		}
		if r.Err != nil || r.Analysis.Verdict != want || r.Bounty.ArtifactURI != uris[i] {
			t.Errorf("result %d out of order or wrong: %+v", i, r)
		}
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.engineSetups.Load() != 1 || s.setups.Load() > 3 || s.teardowns.Load() != s.setups.Load() {
		t.Errorf("engine setups %d, worker setups %d, teardowns %d", s.engineSetups.Load(), s.setups.Load(), s.teardowns.Load())
	}
}

func TestSubmitDeliversAndRunsHooks(t *testing.T) {
	var mu sync.Mutex
	var answers []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("answer is not JSON: %s", body)
		}
		mu.Lock()
		answers = append(answers, m)
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	done := make(chan psengine.Analysis, 1)
	e := psengine.New(marker, testDirs(t), psengine.OnSuccess(func(_ context.Context, res psengine.Result) { done <- res.Analysis }))
	b := psenginetest.Bounty([]byte("MALWARE"), psenginetest.WithResponseURL(srv.URL+"/answer"))
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.Submit(ctx, b); err != nil {
		t.Fatal(err)
	}
	cancel() // the submitter goes away; the answer is still delivered
	a := <-done
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a.Verdict != psengine.Malicious {
		t.Errorf("hook analysis %+v", a)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(answers) != 1 || answers[0]["verdict"] != "malicious" {
		t.Fatalf("answers delivered: %v", answers)
	}
	bidNum, ok := answers[0]["bid"].(float64)
	if !ok || int64(bidNum) < bid.DefaultRules.Min {
		t.Errorf("bid %v not within the rules", answers[0]["bid"])
	}
	if err := e.Submit(context.Background(), b); !errors.Is(err, psengine.ErrClosed) {
		t.Errorf("Submit after Shutdown = %v, want ErrClosed", err)
	}
}

func TestShutdownReportsUnfinished(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		block := psengine.ScannerFunc(func(ctx context.Context, _ psengine.Env, _ psengine.Artifact) (psengine.Analysis, error) {
			<-ctx.Done()
			return psengine.Analysis{}, ctx.Err()
		})
		var mu sync.Mutex
		failed := map[string]error{}
		e := psengine.New(block, testDirs(t), psengine.OnError(func(_ context.Context, res psengine.Result) {
			b, err := res.Bounty, res.Err
			mu.Lock()
			failed[b.ID.String()] = err
			mu.Unlock()
		}))
		for i := range 3 {
			if err := e.Submit(context.Background(), psenginetest.Bounty([]byte("x"), psenginetest.WithID(fmt.Sprint(i+1)), psenginetest.WithExpiration(time.Now().Add(time.Hour)))); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v, want the deadline error", err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, id := range []string{"1", "2", "3"} {
			if failed[id] == nil {
				t.Errorf("bounty %s not reported after the shutdown deadline", id)
			}
		}
		if !errors.Is(failed["3"], psengine.ErrShutdown) {
			t.Errorf("queued bounty 3 reported with %v, want ErrShutdown", failed["3"])
		}
	})
}

// TestNoTempFilesLeft: 1,000 analyses with failures mixed in leave nothing
// in the temp directory.
func TestNoTempFilesLeft(t *testing.T) {
	tmp := t.TempDir()
	var n atomic.Int64
	s := psengine.ScannerFunc(func(ctx context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
		if _, err := a.Path(); err != nil {
			return psengine.Analysis{}, err
		}
		switch n.Add(1) % 5 {
		case 0:
			panic("boom")
		case 1:
			return psengine.Analysis{}, errors.New("failed")
		case 2:
			return psengine.Analysis{Verdict: "bogus"}, nil
		}
		return psengine.Analysis{Verdict: psengine.Benign}, nil
	})
	p := fetch.Remote()
	p.TempDir, p.MemoryLimit = tmp, 8 // every artifact spills to a file
	e := newEngine(t, s, psengine.WithWorkers(2), psengine.WithFetchPolicy(p))
	var bounties []psengine.Bounty
	for i := range 1000 {
		data := fmt.Appendf(nil, "artifact number %d", i)
		opts := []psenginetest.BountyOption{psenginetest.WithID(fmt.Sprint(i + 1))}
		if i%7 == 0 {
			opts = append(opts, psenginetest.WithSHA256(strings.Repeat("0", 64)))
		}
		bounties = append(bounties, psenginetest.Bounty(data, opts...))
	}
	answered := 0
	for res := range e.AnalyzeBounties(context.Background(), func(yield func(psengine.Bounty) bool) {
		for _, b := range bounties {
			if !yield(b) {
				return
			}
		}
	}) {
		if res.Answered {
			answered++
		}
	}
	if answered != 1000 {
		t.Errorf("%d of 1000 answered", answered)
	}
	left, _ := os.ReadDir(tmp)
	if len(left) != 0 {
		t.Errorf("%d temp files left behind, e.g. %s", len(left), left[0].Name())
	}
}

func TestCommands(t *testing.T) {
	s := struct {
		psengine.Scanner
		psengine.Commander
	}{marker, commander{}}
	e := newEngine(t, s)
	out, err := e.Command(context.Background(), "echo", []string{"a", "b"})
	if err != nil || fmt.Sprint(out) != "[a b]" {
		t.Errorf("echo = %v, %v", out, err)
	}
	if _, err := e.Command(context.Background(), "nope", nil); !errors.Is(err, psengine.ErrUnknownCommand) {
		t.Errorf("unknown command error %v", err)
	}
	if _, err := e.Command(context.Background(), "panic", nil); !errors.As(err, new(*psengine.PanicError)) {
		t.Errorf("panicking command error %v", err)
	}
}

type commander struct{}

func (commander) Commands() []psengine.Command {
	return []psengine.Command{
		{Name: "echo", Run: func(_ context.Context, _ psengine.Env, args []string) (any, error) { return args, nil }},
		{Name: "panic", Run: func(context.Context, psengine.Env, []string) (any, error) { panic("command bug") }},
	}
}

func TestUpdateSwapsEnv(t *testing.T) {
	s := &updater{}
	e := newEngine(t, s)
	ctx := context.Background()
	first, _ := e.Analyze(ctx, "data:,x")
	if err := e.Update(ctx); err != nil {
		t.Fatal(err)
	}
	second, _ := e.Analyze(ctx, "data:,x")
	if first.Analysis.Metadata.MalwareFamily != "v1" || second.Analysis.Metadata.MalwareFamily != "v2" {
		t.Errorf("families %q then %q, want v1 then v2", first.Analysis.Metadata.MalwareFamily, second.Analysis.Metadata.MalwareFamily)
	}
}

var versionKey = psengine.NewKey[string]("version")

type updater struct{}

func (updater) SetupEngine(_ context.Context, env psengine.Env) (psengine.Env, error) {
	return versionKey.With(env, "v1"), nil
}

func (updater) Update(_ context.Context, env psengine.Env) (psengine.Env, error) {
	return versionKey.With(env, "v2"), nil
}

func (updater) Scan(_ context.Context, env psengine.Env, _ psengine.Artifact) (psengine.Analysis, error) {
	return psengine.Analysis{Verdict: psengine.Malicious, Metadata: psengine.Metadata{MalwareFamily: versionKey.Must(env)}}, nil
}

func TestScannerConformance(t *testing.T) {
	psenginetest.TestScanner(t, marker, []psenginetest.Case{
		{Name: "marker", Data: []byte("MALWARE"), Want: psengine.Malicious},
		{Name: "clean", Data: []byte("hello"), Want: psengine.Benign},
	}, testDirs(t))
}

func envdirsFor(d string) envdirs.Dirs { return envdirs.Dirs{Home: d, Temp: d} }

// TestStoppedConsumerHandsBack: a worker stopped mid-scan does not answer
// unknown; the job goes back to the broker and another consumer answers it.
func TestStoppedConsumerHandsBack(t *testing.T) {
	q := broker.NewMemory(broker.MemoryConfig{Backoff: pipeline.Backoff{Initial: time.Millisecond}})
	started := make(chan struct{}, 1)
	var calls atomic.Int32
	s := psengine.ScannerFunc(func(ctx context.Context, _ psengine.Env, _ psengine.Artifact) (psengine.Analysis, error) {
		if calls.Add(1) == 1 {
			started <- struct{}{}
			<-ctx.Done()
			return psengine.Analysis{}, ctx.Err()
		}
		return psengine.Analysis{Verdict: psengine.Malicious}, nil
	})
	answers := make(chan psengine.Analysis, 2)
	e := newEngine(t, s, psengine.WithBroker(q),
		psengine.OnSuccess(func(_ context.Context, res psengine.Result) { answers <- res.Analysis }))
	if err := e.Submit(context.Background(), psenginetest.Bounty([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- e.Serve(ctx) }()
	<-started
	stop()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	ctx2, stop2 := context.WithCancel(context.Background())
	defer stop2()
	go func() { _ = e.Serve(ctx2) }()
	if a := <-answers; a.Verdict != psengine.Malicious {
		t.Errorf("answer %+v, want the second attempt's malicious", a)
	}
	if len(answers) != 0 || calls.Load() != 2 {
		t.Errorf("%d extra answers, %d scans", len(answers), calls.Load())
	}
	stop2()
}

func TestDiscardExpiredFromEnvironment(t *testing.T) {
	getenv := func(k string) string {
		if k == "PSENGINE_DISCARD_EXPIRED_BOUNTIES" {
			return "false"
		}
		return ""
	}
	expiredBounty := psenginetest.Bounty([]byte("MALWARE"), psenginetest.WithExpiration(time.Now().Add(-time.Second)))
	e := newEngine(t, marker, psengine.WithGetenv(getenv))
	if res, err := e.AnalyzeBounty(context.Background(), expiredBounty); !res.Answered || err != nil {
		t.Errorf("PSENGINE_DISCARD_EXPIRED_BOUNTIES=false: answered %v, err %v", res.Answered, err)
	}
	// An explicit option wins over the environment.
	e = newEngine(t, marker, psengine.WithGetenv(getenv), psengine.WithDiscardExpired(true))
	if _, err := e.AnalyzeBounty(context.Background(), expiredBounty); !errors.Is(err, psengine.ErrExpired) {
		t.Errorf("WithDiscardExpired(true) over the environment: err %v, want ErrExpired", err)
	}
}

// A bounty from the network cannot make the engine fetch from its own
// network when the policy is PublicOnly (the webhook CLI's default).
func TestPublicOnlyPolicyAnswersCannotFetch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("the engine reached a loopback artifact server")
	}))
	defer srv.Close()
	p := fetch.Remote()
	p.PublicOnly = true
	e := newEngine(t, marker, psengine.WithFetchPolicy(p))
	res, err := e.AnalyzeBounty(context.Background(), psenginetest.Bounty(nil, psenginetest.WithURI(srv.URL+"/a")))
	if !errors.Is(err, fetch.ErrNotAllowed) || !res.Answered || res.Analysis.Metadata.Comments[0] != psengine.CommentCannotFetch {
		t.Fatalf("err %v, answer %+v; want ErrNotAllowed answered SKIPPED:CANNOT-FETCH", err, res.Analysis)
	}
	if !strings.Contains(res.Analysis.Metadata.Error, "not a public address") {
		t.Errorf("metadata.error %q does not say why", res.Analysis.Metadata.Error)
	}
}

// countingScanner counts its scans.
func countScans(n *atomic.Int32) psengine.Scanner {
	return psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
		n.Add(1)
		return psengine.Analysis{Verdict: psengine.Malicious}, nil
	})
}

// A bounty is scanned once: an answer refused with 429 and a Retry-After
// beyond the expiration ends the delivery at once (reported to the error
// hooks), and one refused with 500 forever is POSTed again until the
// expiration, never scanned again.
func TestOneScanWhateverTheDelivery(t *testing.T) {
	for _, c := range []struct {
		name    string
		respond func(w http.ResponseWriter)
		minPOST int32
	}{
		{"429 Retry-After past the expiration", func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
		}, 1},
		{"500 forever", func(w http.ResponseWriter) { w.WriteHeader(http.StatusInternalServerError) }, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			var posts, scans atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				posts.Add(1)
				c.respond(w)
			}))
			defer srv.Close()
			reported := make(chan error, 4)
			q := broker.NewMemory(broker.MemoryConfig{Backoff: pipeline.Backoff{Initial: time.Millisecond}})
			e := newEngine(t, countScans(&scans), psengine.WithBroker(q), psengine.WithDeliveryMargin(100*time.Millisecond),
				psengine.OnError(func(_ context.Context, res psengine.Result) { reported <- res.Err }))
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			served := make(chan error, 1)
			go func() { served <- e.Serve(ctx) }()
			b := psenginetest.Bounty([]byte("x"), psenginetest.WithResponseURL(srv.URL+"/answer"), psenginetest.WithExpiration(time.Now().Add(2*time.Second)))
			if err := e.Submit(context.Background(), b); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-reported:
				if !errors.Is(err, psengine.ErrDeliver) {
					t.Errorf("reported %v, want ErrDeliver", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the failed delivery was not reported")
			}
			time.Sleep(300 * time.Millisecond) // a redelivery, if any, would come now
			if n := scans.Load(); n != 1 {
				t.Errorf("%d scans, want 1", n)
			}
			if n := posts.Load(); n < c.minPOST {
				t.Errorf("%d POSTs, want at least %d", n, c.minPOST)
			}
			if q.Len() != 0 {
				t.Errorf("the job is still queued")
			}
			stop()
			<-served
		})
	}
}

// A bounty with less than the delivery margin left is scanned within what
// remains, never past its expiration.
func TestScanWithinWhatRemains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var deadline time.Time
		s := psengine.ScannerFunc(func(ctx context.Context, _ psengine.Env, _ psengine.Artifact) (psengine.Analysis, error) {
			deadline, _ = ctx.Deadline()
			return psengine.Analysis{Verdict: psengine.Unknown}, nil
		})
		e := psengine.New(s, testDirs(t), psengine.WithDeliveryMargin(5*time.Second))
		exp := time.Now().Add(2 * time.Second)
		if _, err := e.AnalyzeBounty(context.Background(), psenginetest.Bounty([]byte("x"), psenginetest.WithExpiration(exp))); err != nil {
			t.Fatal(err)
		}
		if !deadline.Equal(exp) {
			t.Errorf("scan deadline %v, want the expiration %v", deadline, exp)
		}
		_ = e.Shutdown(context.Background())
	})
}

// A POST under way when Shutdown's deadline passes is given the grace to
// finish rather than cut at once: cut, it may have reached the receiver
// already, and the answer would be POSTed again after a restart.
func TestShutdownLetsAPOSTUnderWayFinish(t *testing.T) {
	posted := make(chan struct{})
	deadline, cancelDeadline := context.WithCancel(context.Background())
	defer cancelDeadline()
	cut := make(chan bool, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(posted)
		<-deadline.Done()
		// Within the grace, the engine does not give up on this POST.
		select {
		case <-r.Context().Done():
			cut <- true
			return
		case <-time.After(200 * time.Millisecond): // well within the grace (1 s)
		}
		cut <- false
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	var scans atomic.Int32
	delivered := make(chan psengine.Result, 1)
	q := broker.NewMemory(broker.MemoryConfig{})
	// Not newEngine: its cleanup wants a clean Shutdown, and this one's
	// deadline passes on purpose.
	e := psengine.New(countScans(&scans), testDirs(t), psengine.WithGetenv(func(string) string { return "" }), psengine.WithBroker(q),
		psengine.OnSuccess(func(_ context.Context, res psengine.Result) { delivered <- res }),
		psengine.OnError(func(_ context.Context, res psengine.Result) { delivered <- res }))
	served := make(chan error, 1)
	go func() { served <- e.Serve(context.Background()) }()
	if err := e.Submit(context.Background(), psenginetest.Bounty([]byte("x"), psenginetest.WithResponseURL(srv.URL+"/answer"))); err != nil {
		t.Fatal(err)
	}
	<-posted
	sctx, cancel := context.WithCancel(context.Background())
	cancel() // Shutdown's deadline has passed: the POST under way is all that is left
	shut := make(chan error, 1)
	go func() { shut <- e.Shutdown(sctx) }()
	cancelDeadline()
	if <-cut {
		t.Fatal("the POST under way was cut at Shutdown's deadline")
	}
	if res := <-delivered; !res.Delivered || res.Err != nil {
		t.Errorf("result %+v, want delivered", res)
	}
	<-shut
	<-served
	if n := q.Len(); n != 0 {
		t.Errorf("%d jobs left in the q, want 0 (delivered, not handed back)", n)
	}
}
