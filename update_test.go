package psengine_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
)

var rulesKey = psengine.NewKey[string]("test.rules")

// versioned is a scanner whose definitions are a version string: Update
// moves to the next one, unless told to fail; the self-test refuses
// "broken"; releases are counted.
type versioned struct {
	next     atomic.Value // string: the version Update returns
	mu       sync.Mutex
	released []string
	healthy  atomic.Bool
	block    chan struct{} // when set, scans of "slow" wait on it
}

func (v *versioned) SetupEngine(_ context.Context, env psengine.Env) (psengine.Env, error) {
	return rulesKey.With(env, "v1"), nil
}

func (v *versioned) Update(_ context.Context, env psengine.Env) (psengine.Env, error) {
	next, _ := v.next.Load().(string)
	if next == "" {
		return env, errors.New("no new definitions")
	}
	return rulesKey.With(env, next), nil
}

func (v *versioned) Describe(_ context.Context, env psengine.Env) (psengine.Metadata, error) {
	return psengine.Metadata{Scanner: psengine.ScannerInfo{SignaturesVersion: rulesKey.Must(env)}}, nil
}

func (v *versioned) SelfTest(_ context.Context, env psengine.Env) error {
	if rulesKey.Must(env) == "broken" {
		return errors.New("the EICAR sample is no longer detected")
	}
	return nil
}

func (v *versioned) Release(_ context.Context, env psengine.Env) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.released = append(v.released, rulesKey.Must(env))
	return nil
}

func (v *versioned) CheckHealth(context.Context, psengine.Env) error {
	if !v.healthy.Load() {
		return errors.New("daemon down")
	}
	return nil
}

func (v *versioned) Scan(ctx context.Context, env psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	if b, _ := a.Bytes(); string(b) == "slow" && v.block != nil {
		<-v.block
	}
	return psengine.Analysis{Verdict: psengine.Malicious, Metadata: psengine.Metadata{MalwareFamily: rulesKey.Must(env)}}, nil
}

func (v *versioned) releasedVersions() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.released...)
}

// An update swaps the definitions in, refreshes the head (answers carry the
// version that scanned them), keeps the old ones until their last scan
// ends, and a candidate that fails its self-test is dropped.
func TestUpdateLifecycle(t *testing.T) {
	v := &versioned{block: make(chan struct{})}
	e := newEngine(t, v, psengine.WithWorkers(2))
	ctx := context.Background()
	if res := psenginetest.Analyze(t, e, []byte("a")); res.Analysis.Metadata.Scanner.SignaturesVersion != "v1" {
		t.Fatalf("before: %+v", res.Analysis.Metadata)
	}

	// A scan under v1 is running while v2 comes in.
	slow := make(chan psengine.Result, 1)
	go func() { slow <- psenginetest.Analyze(t, e, []byte("slow")) }()
	time.Sleep(50 * time.Millisecond)
	v.next.Store("v2")
	if err := e.Update(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.Env().Head().Scanner.SignaturesVersion; got != "v2" {
		t.Errorf("head after the update: %q, want v2", got)
	}
	res := psenginetest.Analyze(t, e, []byte("b"))
	if m := res.Analysis.Metadata; m.MalwareFamily != "v2" || m.Scanner.SignaturesVersion != "v2" {
		t.Errorf("after: %+v", m)
	}
	if r := v.releasedVersions(); len(r) != 0 {
		t.Errorf("released %v while a scan still uses v1", r)
	}
	close(v.block)
	old := <-slow
	if m := old.Analysis.Metadata; m.MalwareFamily != "v1" || m.Scanner.SignaturesVersion != "v1" {
		t.Errorf("the scan that started under v1 answered %+v; want v1 throughout", m)
	}
	psenginetest.Eventually(t, "v1 released", func() bool { r := v.releasedVersions(); return len(r) == 1 && r[0] == "v1" })

	// A broken candidate is dropped; v2 keeps serving.
	v.next.Store("broken")
	if err := e.Update(ctx); err == nil {
		t.Fatal("a candidate failing its self-test was swapped in")
	}
	psenginetest.Eventually(t, "the broken candidate released", func() bool { r := v.releasedVersions(); return len(r) == 2 && r[1] == "broken" })
	if res := psenginetest.Analyze(t, e, []byte("c")); res.Analysis.Metadata.MalwareFamily != "v2" {
		t.Errorf("after a failed update: %+v", res.Analysis.Metadata)
	}
}

// Ready: not before Start, then as the scanner's health says, never while
// shutting down.
func TestReady(t *testing.T) {
	v := &versioned{}
	e := newEngine(t, v)
	ctx := context.Background()
	if err := e.Ready(ctx); !errors.Is(err, psengine.ErrNotReady) {
		t.Errorf("before Start: %v", err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Ready(ctx); !errors.Is(err, psengine.ErrNotReady) {
		t.Errorf("unhealthy: %v", err)
	}
	v.healthy.Store(true)
	if err := e.Ready(ctx); err != nil {
		t.Errorf("healthy: %v", err)
	}
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Ready(ctx); !errors.Is(err, psengine.ErrNotReady) {
		t.Errorf("after Shutdown: %v", err)
	}
}

var payloadKey = psengine.NewKey[*[1 << 16]byte]("test.payload")

// payloads is a scanner whose every update sets a new payload under the
// same key, as an updater recompiling rules does.
type payloads struct{ first weak.Pointer[[1 << 16]byte] }

func (p *payloads) SetupEngine(_ context.Context, env psengine.Env) (psengine.Env, error) {
	first := new([1 << 16]byte)
	p.first = weak.Make(first)
	return payloadKey.With(env, first), nil
}

func (p *payloads) Update(_ context.Context, env psengine.Env) (psengine.Env, error) {
	return payloadKey.With(env, new([1 << 16]byte)), nil
}

func (p *payloads) Scan(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
	return psengine.Analysis{Verdict: psengine.Benign}, nil
}

// The definitions an update replaced become garbage once released: an
// engine updated daily for months does not keep every old rule set.
func TestUpdateDropsReplacedValues(t *testing.T) {
	p := &payloads{}
	e := newEngine(t, p)
	psenginetest.Analyze(t, e, []byte("a"))
	for range 3 {
		if err := e.Update(context.Background()); err != nil {
			t.Fatal(err)
		}
		psenginetest.Analyze(t, e, []byte("b"))
	}
	runtime.GC()
	runtime.GC()
	if p.first.Value() != nil {
		t.Error("the first payload is still reachable after three updates replaced it")
	}
}

// genState is one generation of definitions, as churn's scans and releases
// see it.
type genState struct {
	id       int
	scanning atomic.Int32
	released atomic.Int32
}

var genKey = psengine.NewKey[*genState]("test.generation")

// churn is a scanner whose every Update makes a new generation, and which
// records each misuse of one: a release of a generation a scan still uses,
// a second release, a scan of a released generation.
type churn struct {
	gens   atomic.Int64
	mu     sync.Mutex
	misuse []string
}

func (c *churn) fail(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.misuse) < 10 {
		c.misuse = append(c.misuse, fmt.Sprintf(format, args...))
	}
}

func (c *churn) SetupEngine(_ context.Context, env psengine.Env) (psengine.Env, error) {
	return genKey.With(env, &genState{id: 0}), nil
}

func (c *churn) Update(_ context.Context, env psengine.Env) (psengine.Env, error) {
	return genKey.With(env, &genState{id: int(c.gens.Add(1))}), nil
}

func (c *churn) Release(_ context.Context, env psengine.Env) error {
	g := genKey.Must(env)
	if n := g.scanning.Load(); n > 0 {
		c.fail("generation %d released while %d scans use it", g.id, n)
	}
	if g.released.Add(1) > 1 {
		c.fail("generation %d released twice", g.id)
	}
	return nil
}

func (c *churn) Scan(_ context.Context, env psengine.Env, _ psengine.Artifact) (psengine.Analysis, error) {
	g := genKey.Must(env)
	g.scanning.Add(1)
	defer g.scanning.Add(-1)
	if g.released.Load() > 0 {
		c.fail("generation %d scanned after its release", g.id)
	}
	runtime.Gosched()
	return psengine.Analysis{Verdict: psengine.Unknown}, nil
}

// Each replaced generation is released exactly once, and only after the
// last scan using it returned, however updates and scans interleave. (A
// generation's use count was read outside its lock when an update replaced
// it: a scan ending at that moment released it too.)
func TestUpdateReleasesEachGenerationOnce(t *testing.T) {
	c := &churn{}
	e := psenginetest.Engine(t, c, psengine.WithWorkers(4))
	ctx := t.Context()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	const scanners, scans, updates = 4, 1000, 2000
	var wg sync.WaitGroup
	for range scanners {
		wg.Go(func() {
			for range scans {
				if _, err := e.Analyze(ctx, "data:,x"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range updates {
		if err := e.Update(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.misuse {
		t.Error(m)
	}
}
