package psengine_test

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/bid"
	"github.com/polyswarm/psengine/psenginetest"
	"github.com/polyswarm/psengine/resultcache"
)

// counted is a scanner that counts its scans by content. Its definitions
// are a version in the Env (Update moves to next); "ERR" fails, "SKIP" is
// skipped, "SLOW" waits for its context, "BLOCK" waits for release.
type counted struct {
	mu      sync.Mutex
	scans   map[string]int
	next    atomic.Value // string: the version Update returns
	release chan struct{}
	keyer   func(env psengine.Env, a psengine.Artifact) (string, bool)
}

func newCounted() *counted { return &counted{scans: map[string]int{}, release: make(chan struct{})} }

func (c *counted) SetupEngine(_ context.Context, env psengine.Env) (psengine.Env, error) {
	return rulesKey.With(env, "v1"), nil
}

func (c *counted) Describe(_ context.Context, env psengine.Env) (psengine.Metadata, error) {
	return psengine.Metadata{Product: "counted", Scanner: psengine.ScannerInfo{SignaturesVersion: rulesKey.Must(env)}}, nil
}

func (c *counted) Scan(ctx context.Context, env psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	data, err := a.Bytes()
	if err != nil {
		return psengine.Analysis{}, err
	}
	c.mu.Lock()
	c.scans[string(data)]++
	c.mu.Unlock()
	switch string(data) {
	case "ERR":
		return psengine.Analysis{}, errors.New("scan failed")
	case "SKIP":
		return psengine.Skipped(errors.New("not now")), nil
	case "SLOW":
		<-ctx.Done()
		return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.5}, nil
	case "BLOCK":
		<-c.release
	}
	return psengine.Analysis{Verdict: psengine.Malicious, Confidence: 0.5, Score: 90,
		Metadata: psengine.Metadata{MalwareFamily: "Family." + rulesKey.Must(env),
			Extra: map[string]any{"report": map[string]any{"rules": []any{"r1"}}}}}, nil
}

func (c *counted) count(content string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.scans[content]
}

// updating is counted with an Updater.
type updating struct{ *counted }

func (u updating) Update(_ context.Context, env psengine.Env) (psengine.Env, error) {
	next, _ := u.next.Load().(string)
	if next == "" {
		return env, psengine.ErrUnchanged
	}
	return rulesKey.With(env, next), nil
}

// keyed is counted with a CacheKeyer.
type keyed struct{ *counted }

func (k keyed) CacheKey(env psengine.Env, a psengine.Artifact) (string, bool) { return k.keyer(env, a) }

func openCache(t *testing.T, path string) *resultcache.Cache {
	t.Helper()
	c, err := resultcache.Open(path, resultcache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// cacheEngine is an engine over s with a result cache in a temp dir, its
// lookups counted. (The psengine.cache.lookups metric is checked in the cli
// module, through the webhook's /metrics: the core's tests have no
// OpenTelemetry SDK.)
func cacheEngine(t *testing.T, s psengine.Scanner, opts ...psengine.Option) (*psengine.Engine, *countingCache) {
	t.Helper()
	c := &countingCache{ResultCache: openCache(t, filepath.Join(t.TempDir(), resultcache.DefaultFile))}
	// The engine is shut down (a cleanup) before the cache is closed.
	return newEngine(t, s, append([]psengine.Option{psengine.WithResultCache(c), psengine.WithWorkers(4)}, opts...)...), c
}

// countingCache counts the lookups of a ResultCache, by result.
type countingCache struct {
	psengine.ResultCache
	mu     sync.Mutex
	counts map[string]int64
}

func (c *countingCache) Get(ctx context.Context, key psengine.CacheKey) (psengine.Analysis, bool) {
	a, hit := c.ResultCache.Get(ctx, key)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]int64{}
	}
	c.counts[map[bool]string{true: "hit", false: "miss"}[hit]]++
	return a, hit
}

// lookups returns the lookups counted, by result.
func lookups(_ *testing.T, c *countingCache) map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.counts)
}

// The same file in two bounties is scanned once; the second bounty's
// answer is its own (its rules, its bid, a vote without one).
func TestCacheSameFileScannedOnce(t *testing.T) {
	s := newCounted()
	e, reader := cacheEngine(t, s)
	ctx := context.Background()
	data := []byte("the same file")
	first, err := e.AnalyzeBounty(ctx, psenginetest.Bounty(data, psenginetest.WithID("1")))
	if err != nil {
		t.Fatal(err)
	}
	narrow := bid.Rules{Min: bid.DefaultRules.Min, Max: 2 * bid.DefaultRules.Min}
	second, err := e.AnalyzeBounty(ctx, psenginetest.Bounty(data, psenginetest.WithID("2"), psenginetest.WithRules(narrow)))
	if err != nil {
		t.Fatal(err)
	}
	vote, err := e.AnalyzeBounty(ctx, psenginetest.Bounty(data, psenginetest.WithID("3"), psenginetest.WithPhase(psengine.Arbitration)))
	if err != nil {
		t.Fatal(err)
	}
	local := psenginetest.Analyze(t, e, data) // analyze FILE: the same content
	if n := s.count(string(data)); n != 1 {
		t.Fatalf("scanned %d times, want 1", n)
	}
	if first.Analysis.Bid != bid.Linear(bid.DefaultRules, 0.5) || second.Analysis.Bid != bid.Linear(narrow, 0.5) || vote.Analysis.Bid != 0 {
		t.Errorf("bids %d, %d, %d: want each bounty's own", first.Analysis.Bid, second.Analysis.Bid, vote.Analysis.Bid)
	}
	for _, res := range []psengine.Result{second, vote, local} {
		a := res.Analysis
		if a.Verdict != psengine.Malicious || a.Metadata.MalwareFamily != "Family.v1" || a.Metadata.Product != "counted" ||
			a.Metadata.Scanner.SignaturesVersion != "v1" || a.Score != 90 || a.Metadata.Extra["report"] == nil {
			t.Errorf("answer from the cache: %+v", a)
		}
		if err := psengine.Validate(res.Bounty, a); err != nil {
			t.Errorf("answer from the cache: %v", err)
		}
	}
	if got := lookups(t, reader); got["hit"] != 3 || got["miss"] != 1 {
		t.Errorf("lookups %v, want 3 hits and 1 miss", got)
	}
}

// The same file in bounties at once is scanned once: the others wait for
// its analysis.
func TestCacheConcurrentSameFileScannedOnce(t *testing.T) {
	s := newCounted()
	e, reader := cacheEngine(t, s)
	var wg sync.WaitGroup
	results := make([]psengine.Result, 8)
	for i := range results {
		wg.Go(func() { results[i] = psenginetest.Analyze(t, e, []byte("BLOCK")) })
	}
	psenginetest.Eventually(t, "the first scan", func() bool { return s.count("BLOCK") > 0 })
	close(s.release)
	wg.Wait()
	if n := s.count("BLOCK"); n != 1 {
		t.Errorf("scanned %d times, want 1", n)
	}
	for i, res := range results {
		if res.Analysis.Verdict != psengine.Malicious {
			t.Errorf("bounty %d: %s", i, res.Analysis.Verdict)
		}
	}
	// The first bounty misses and scans; each other misses too, or waits
	// for that scan and then hits.
	if got := lookups(t, reader); got["hit"]+got["miss"] < 8 || got["hit"] != 7 {
		t.Errorf("lookups %v, want 7 hits", got)
	}
}

// An update invalidates the cache: the file is scanned again with the new
// definitions, and its old analysis is never served again.
func TestCacheInvalidatedByUpdate(t *testing.T) {
	s := updating{newCounted()}
	e, _ := cacheEngine(t, s)
	ctx := context.Background()
	data := []byte("sample")
	psenginetest.Analyze(t, e, data)
	psenginetest.Analyze(t, e, data)
	s.next.Store("v2")
	if err := e.Update(ctx); err != nil {
		t.Fatal(err)
	}
	res := psenginetest.Analyze(t, e, data)
	if n := s.count("sample"); n != 2 || res.Analysis.Metadata.MalwareFamily != "Family.v2" || res.Analysis.Metadata.Scanner.SignaturesVersion != "v2" {
		t.Errorf("after the update: scanned %d times (want 2), answer %s by %s", n, res.Analysis.Metadata.MalwareFamily, res.Analysis.Metadata.Scanner.SignaturesVersion)
	}
	psenginetest.Analyze(t, e, data)
	if n := s.count("sample"); n != 2 {
		t.Errorf("scanned %d times, want 2: the new analysis is cached", n)
	}
	// An update with nothing new keeps the cache.
	s.next.Store("")
	if err := e.Update(ctx); !errors.Is(err, psengine.ErrUnchanged) {
		t.Fatal(err)
	}
	psenginetest.Analyze(t, e, data)
	if n := s.count("sample"); n != 2 {
		t.Errorf("scanned %d times after an unchanged update, want 2", n)
	}
}

// New definitions under the same versions turn the cache off: their
// results could not be told from the old ones'.
func TestCacheOffWhenAnUpdateKeepsTheVersion(t *testing.T) {
	s := updating{newCounted()}
	e, _ := cacheEngine(t, s)
	psenginetest.Analyze(t, e, []byte("sample"))
	s.next.Store("v1") // new definitions, the same version
	if err := e.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	psenginetest.Analyze(t, e, []byte("sample"))
	psenginetest.Analyze(t, e, []byte("sample"))
	if n := s.count("sample"); n != 3 {
		t.Errorf("scanned %d times, want 3 (no cache after the update)", n)
	}
}

// versionless updates its definitions without naming their version.
type versionless struct{ updating }

func (versionless) Describe(context.Context, psengine.Env) (psengine.Metadata, error) {
	return psengine.Metadata{Product: "versionless"}, nil
}

func TestCacheOffForAnUpdaterWithoutVersion(t *testing.T) {
	s := versionless{updating{newCounted()}}
	e, reader := cacheEngine(t, s)
	psenginetest.Analyze(t, e, []byte("sample"))
	psenginetest.Analyze(t, e, []byte("sample"))
	if n := s.count("sample"); n != 2 {
		t.Errorf("scanned %d times, want 2", n)
	}
	if got := lookups(t, reader); len(got) != 0 {
		t.Errorf("lookups %v, want none", got)
	}
}

// Only the scanner's own analyses of files are cached: not scan errors,
// not special results, not what a scan cut short by its deadline returned,
// not URL artifacts.
func TestCacheOnlyOwnAnalyses(t *testing.T) {
	s := newCounted()
	e, _ := cacheEngine(t, s, psengine.WithTimeout(200*time.Millisecond))
	ctx := context.Background()
	for range 2 {
		for _, data := range []string{"ERR", "SKIP", "SLOW"} {
			psenginetest.Analyze(t, e, []byte(data))
		}
		if res, _ := e.AnalyzeURL(ctx, "http://example.invalid/x"); !res.Answered {
			t.Fatalf("URL not answered: %v", res.Err)
		}
	}
	for _, data := range []string{"ERR", "SKIP", "SLOW", "http://example.invalid/x"} {
		if n := s.count(data); n != 2 {
			t.Errorf("%s scanned %d times, want 2", data, n)
		}
	}
}

// A CacheKeyer's key sets analyses apart, and its ok false keeps one out.
func TestCacheKeyer(t *testing.T) {
	s := keyed{newCounted()}
	var policy atomic.Value
	policy.Store("p1")
	s.keyer = func(env psengine.Env, a psengine.Artifact) (string, bool) {
		if rulesKey.Must(env) != "v1" {
			t.Errorf("CacheKey called with the Env %q, want the engine's", rulesKey.Must(env))
		}
		return policy.Load().(string), a.Size != 5 // "never" is never cached
	}
	e, _ := cacheEngine(t, s)
	psenginetest.Analyze(t, e, []byte("sample"))
	psenginetest.Analyze(t, e, []byte("sample"))
	policy.Store("p2")
	psenginetest.Analyze(t, e, []byte("sample"))
	psenginetest.Analyze(t, e, []byte("never"))
	psenginetest.Analyze(t, e, []byte("never"))
	if n := s.count("sample"); n != 2 {
		t.Errorf("sample scanned %d times, want 2 (once per key)", n)
	}
	if n := s.count("never"); n != 2 {
		t.Errorf("an artifact the keyer refuses scanned %d times, want 2", n)
	}
}

// The cache outlives the engine: the next engine over the same file
// answers without a scan.
func TestCacheAcrossEngines(t *testing.T) {
	path := filepath.Join(t.TempDir(), resultcache.DefaultFile)
	ctx := context.Background()
	for i, want := range []int{1, 0} { // scans in each run
		c, err := resultcache.Open(path, resultcache.Config{})
		if err != nil {
			t.Fatal(err)
		}
		s := newCounted()
		e := psengine.New(s, testDirs(t), psengine.WithResultCache(c))
		res, err := e.Analyze(ctx, psenginetest.DataURI([]byte("sample")))
		if err != nil || res.Analysis.Verdict != psengine.Malicious {
			t.Fatalf("run %d: %v %v", i, res.Analysis.Verdict, err)
		}
		if err := e.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if got := s.count("sample"); got != want {
			t.Errorf("run %d scanned %d times, want %d", i, got, want)
		}
	}
}
