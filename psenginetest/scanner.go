package psenginetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/polyswarm/psengine"
)

// Case is one artifact TestScanner feeds the scanner, with the verdict
// expected ("" accepts any verdict).
type Case struct {
	Name string
	Data []byte // a file artifact's content
	URL  string // when set, a URL artifact instead
	Want psengine.Verdict
}

// hangLimit is how long a scan may take to notice its context ended before
// TestScanner calls it hung. It is a hang detector, not a speed target.
const hangLimit = 10 * time.Second

// TestScanner is a conformance test for scanners: run it from your own
// test with the artifacts your engine knows. It checks, for the given cases
// plus an empty and a random artifact, that the scanner
//
//   - runs inside an engine (setup, head, workers) and its answers are valid
//     for PolySwarm, with the expected verdicts, both in-process and with
//     the process backend (each scan in a child process: see
//     ProcessWorkers);
//   - is pure: the same artifact twice gives the same analysis;
//   - is safe for concurrent use (run your tests with -race);
//   - returns promptly when its context is cancelled or past its deadline;
//   - never panics.
//
// opts are passed to the engine (WithDirs, WithGetenv...).
func TestScanner(t *testing.T, s psengine.Scanner, cases []Case, opts ...psengine.Option) {
	t.Helper()
	if InChild() { // a worker child of the "answers/process" subtest: serve it
		Engine(t, s, append([]psengine.Option{psengine.WithWorkers(2), ProcessWorkers(t, psengine.ProcessConfig{})}, opts...)...)
		t.Fatal("psenginetest: a worker child's engine returned from New")
	}
	random := make([]byte, 4096)
	_, _ = rand.Read(random)
	cases = append(append([]Case(nil), cases...),
		Case{Name: "empty artifact", Data: []byte{}},
		Case{Name: "random bytes", Data: random},
	)
	ctx := context.Background()
	engine := Engine(t, s, append([]psengine.Option{psengine.WithWorkers(2)}, opts...)...)
	if err := engine.Start(ctx); err != nil {
		t.Fatalf("engine start: %v", err)
	}
	env := engine.Env()
	if ws, ok := s.(psengine.WorkerSetup); ok {
		wenv, err := ws.SetupWorker(ctx, env)
		if err != nil {
			t.Fatalf("worker setup: %v", err)
		}
		env = wenv
		if wt, ok := s.(psengine.WorkerTeardown); ok {
			t.Cleanup(func() {
				if err := wt.TeardownWorker(context.Background(), env); err != nil {
					t.Errorf("worker teardown: %v", err)
				}
			})
		}
	}
	artifact := func(t *testing.T, c Case) psengine.Artifact {
		if c.URL != "" {
			return URLArtifact(t, c.URL)
		}
		return Artifact(t, c.Data)
	}
	scan := func(ctx context.Context, t *testing.T, a psengine.Artifact) (res psengine.Analysis, err error) {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Scan panicked: %v", r)
			}
		}()
		return s.Scan(ctx, env, a)
	}

	answers := func(t *testing.T, engine *psengine.Engine) {
		for _, c := range cases {
			t.Run(c.Name, func(t *testing.T) {
				b := Bounty(c.Data)
				if c.URL != "" {
					b.ArtifactType, b.ArtifactURI, b.SHA256 = psengine.URLArtifact, c.URL, ""
				}
				res, err := engine.AnalyzeBounty(ctx, b)
				if !res.Answered {
					t.Fatalf("bounty not answered: %v", err)
				}
				if err != nil && !errors.Is(err, psengine.ErrUnsupported) {
					t.Errorf("AnalyzeBounty: %v", err)
				}
				if verr := psengine.Validate(b, res.Analysis); verr != nil {
					t.Errorf("answer invalid: %v", verr)
				}
				if c.Want != "" && res.Analysis.Verdict != c.Want {
					t.Errorf("verdict %q, want %q (analysis %+v)", res.Analysis.Verdict, c.Want, res.Analysis)
				}
			})
		}
	}
	t.Run("answers", func(t *testing.T) {
		t.Run("local", func(t *testing.T) { answers(t, engine) })
		t.Run("process", func(t *testing.T) {
			if testing.Short() {
				t.Skip("-short: no child processes")
			}
			pe := Engine(t, s, append([]psengine.Option{psengine.WithWorkers(2), ProcessWorkers(t, psengine.ProcessConfig{})}, opts...)...)
			if err := pe.Start(ctx); err != nil {
				t.Fatalf("engine start with the process backend: %v", err)
			}
			answers(t, pe)
		})
	})

	t.Run("pure", func(t *testing.T) {
		for _, c := range cases {
			a := artifact(t, c)
			first, err1 := scan(ctx, t, a)
			second, err2 := scan(ctx, t, a)
			if fmt.Sprint(err1) != fmt.Sprint(err2) {
				t.Errorf("%s: errors differ: %v, then %v", c.Name, err1, err2)
			}
			if diff := cmp.Diff(first, second, AnalysisOptions); diff != "" {
				t.Errorf("%s: same artifact, different analyses (-first +second):\n%s", c.Name, diff)
			}
			want := c.Data
			if c.URL != "" {
				want = []byte(c.URL)
			}
			if got, err := a.Bytes(); err == nil && !bytes.Equal(got, want) {
				t.Errorf("%s: the scan modified the artifact's bytes (Artifact.Bytes is shared: bytes.Clone it to change it)", c.Name)
			}
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		want := make([]psengine.Analysis, len(cases))
		arts := make([]psengine.Artifact, len(cases))
		for i, c := range cases {
			arts[i] = artifact(t, c)
			want[i], _ = scan(ctx, t, arts[i])
		}
		var wg sync.WaitGroup
		for range 8 {
			for i := range cases {
				wg.Go(func() {
					got, _ := s.Scan(ctx, env, arts[i])
					if diff := cmp.Diff(want[i], got, AnalysisOptions); diff != "" {
						t.Errorf("%s: concurrent scan differs (-want +got):\n%s", cases[i].Name, diff)
					}
				})
			}
		}
		wg.Wait()
	})

	t.Run("cancellation", func(t *testing.T) {
		for _, c := range cases {
			for _, mk := range []struct {
				name string
				ctx  func() (context.Context, context.CancelFunc)
			}{
				{"cancelled", func() (context.Context, context.CancelFunc) {
					ctx, cancel := context.WithCancel(ctx)
					cancel()
					return ctx, cancel
				}},
				{"past deadline", func() (context.Context, context.CancelFunc) {
					return context.WithDeadline(ctx, time.Now().Add(-time.Second))
				}},
			} {
				cctx, cancel := mk.ctx()
				a := artifact(t, c)
				done := make(chan struct{})
				go func() {
					defer close(done)
					defer func() { _ = recover() }()
					_, _ = s.Scan(cctx, env, a)
				}()
				select {
				case <-done:
				case <-time.After(hangLimit):
					t.Errorf("%s (%s): Scan did not return within %v of its context ending", c.Name, mk.name, hangLimit)
				}
				cancel()
			}
		}
	})
}
