package psengine

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/polyswarm/psengine/internal/telemetry"
	"github.com/polyswarm/psengine/pipeline"
)

// The result cache: a scanner's analysis of an artifact, remembered by the
// artifact's content and the definitions that made it, so that the same
// file met again (in another bounty, in a re-run of a corpus) is answered
// without a scan. The engine depends on the ResultCache interface only; the
// package resultcache is the durable implementation (a bbolt file in the
// engine's state directory).
//
// What is cached is the scanner's own Analysis, before the bid: a hit goes
// through the answer stage like a fresh scan (the bounty's rules, the bid,
// the head, Validate), so each bounty gets an answer of its own. Only the
// analyses of file artifacts that the scanner returned without an error and
// before the deadline are cached: never a special result (a fetch failure,
// UNSUPPORTED, ENCRYPTED, a timeout, a scan error, an analysis whose
// comments hold a SKIPPED* comment), never a URL artifact (a URL's verdict
// depends on what it serves now, not on its text).

// ResultCache remembers analyses. Implementations are safe for concurrent
// use, and treat their failures as misses (Get) or drop the write (Put):
// the engine then scans, as it would without a cache. Get and Put should
// be quick (a lookup; a write queued): they run on the bounty's path.
type ResultCache interface {
	// Get returns the analysis put under key, if any. The analysis is the
	// caller's: a copy, not shared with the cache or with other callers.
	Get(ctx context.Context, key CacheKey) (Analysis, bool)
	// Put remembers a under key. It may drop it (a full queue, an analysis
	// too large, a key of a generation no longer retained).
	Put(ctx context.Context, key CacheKey, a Analysis)
	// Retain tells the cache which generation of definitions the engine
	// serves from now on: the analyses of every other generation can be
	// dropped, and Puts under another generation may be refused. The
	// engine calls it at Start and after each update that swapped new
	// definitions in; "" drops everything.
	Retain(ctx context.Context, generation string)
}

// CacheKey says what an analysis was made of.
type CacheKey struct {
	// Generation names the definitions and the program that made the
	// analysis: the head's product, version, vendor_version and
	// signatures_version, and the engine's executable (its size and
	// modification time, so that a rebuilt engine does not answer with the
	// results of the previous build).
	Generation string
	Type       ArtifactType
	SHA256     string // the artifact's content
	// Scanner is what else the analysis depends on, as the scanner
	// declares it (CacheKeyer): its configuration, maybe a part of the
	// artifact's name; "" for a scanner that declares nothing.
	Scanner string
}

// CacheKeyer is the optional interface of a scanner whose analyses depend
// on more than the artifact's content and the definitions named by its
// head: its configuration (an answer policy, external variables), or, for
// some artifacts, their name or path. CacheKey returns that as a string
// (the same string for the same inputs: it is compared, not parsed), or ok
// false when the analysis of a must not be cached at all (it depends on
// something that changes behind the engine's back). It is called with the
// engine's Env of the generation that scans (not a worker's) before and
// after the scan, and must be cheap. A scanner that is not a CacheKeyer
// has its analyses cached under its content and definitions alone.
type CacheKeyer interface {
	CacheKey(env Env, a Artifact) (key string, ok bool)
}

// WithResultCache has the engine answer an artifact from c when c holds
// the scanner's analysis of the same content by the same definitions (see
// ResultCache and CacheKey), and remember the analyses it makes in c.
// Lookups are counted (psengine_cache_lookups_total{result="hit"|"miss"}).
// A scanner that is an Updater and names no signatures_version in its head
// gets no cache: its results could not be told from those of other
// definitions.
func WithResultCache(c ResultCache) Option {
	return opt("WithResultCache(...)", func(cfg *config) { cfg.cache = c })
}

// results is the engine's side of the result cache.
type results struct {
	cache ResultCache
	tel   telemetry.Telemetry // counts the lookups

	mu sync.Mutex
	// off: generations whose results cannot be told from those of other
	// definitions (an update that kept the head's versions, a scanner
	// that updates without a signatures_version): no lookup, no Put.
	off map[string]bool
	// scanning: keys whose scan a bounty is leading; closed when it ends,
	// so that a bounty with the same artifact waits for its analysis
	// rather than scan it too.
	scanning map[CacheKey]chan struct{}
}

// newResults sets up the result cache of WithResultCache (nil without one).
func (e *Engine) newResults() *results {
	if e.cfg.cache == nil {
		return nil
	}
	return &results{cache: e.cfg.cache, tel: e.tel, off: map[string]bool{}, scanning: map[CacheKey]chan struct{}{}}
}

// programIdentity names the running executable: its size and modification
// time (a rebuilt program is another), or "unknown".
var programIdentity = sync.OnceValue(func() string {
	exe, err := os.Executable()
	if err != nil {
		return "unknown"
	}
	st, err := os.Stat(exe)
	if err != nil {
		return "unknown"
	}
	return strconv.FormatInt(st.Size(), 10) + "@" + strconv.FormatInt(st.ModTime().UnixNano(), 10)
})

// cacheGeneration is the generation of the definitions whose head is h.
func cacheGeneration(h Metadata) string {
	return fmt.Sprintf("product=%q version=%q vendor_version=%q signatures_version=%q program=%s",
		h.Product, h.Scanner.Version, h.Scanner.VendorVersion, h.Scanner.SignaturesVersion, programIdentity())
}

// retainResults tells the cache the engine serves env from now on: at
// Start (prev nil), and after an update swapped env in for prev.
func (e *Engine) retainResults(ctx context.Context, prev *Env, env Env) {
	r := e.results
	if r == nil {
		return
	}
	gen := cacheGeneration(env.head)
	log := e.cfg.logger
	_, updates := e.orig.(Updater)
	switch {
	case updates && env.head.Scanner.SignaturesVersion == "":
		r.turnOff(gen)
		r.cache.Retain(ctx, "")
		log.WarnContext(ctx, "the result cache is off: the scanner updates its definitions but its head names no signatures_version")
	case prev != nil && cacheGeneration(prev.head) == gen:
		// New definitions under the same versions: their results cannot
		// be told from the old ones'.
		r.turnOff(gen)
		r.cache.Retain(ctx, "")
		log.WarnContext(ctx, "the result cache is off until the next start: an update kept the head's versions",
			"signatures_version", env.head.Scanner.SignaturesVersion)
	default:
		r.cache.Retain(ctx, gen)
	}
}

func (r *results) turnOff(gen string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.off[gen] = true
}

// cacheKey is the key of the analysis of a by generation g, and whether it
// may be cached.
func (e *Engine) cacheKey(g *generation, a Artifact) (CacheKey, bool) {
	if a.Type != FileArtifact || a.SHA256 == "" {
		return CacheKey{}, false
	}
	key := CacheKey{Generation: cacheGeneration(g.env.head), Type: a.Type, SHA256: a.SHA256}
	r := e.results
	r.mu.Lock()
	off := r.off[key.Generation]
	r.mu.Unlock()
	if off {
		return CacheKey{}, false
	}
	if k, ok := e.orig.(CacheKeyer); ok {
		var part string
		var cacheable bool
		if perr := pipeline.Protect(func() { part, cacheable = k.CacheKey(*g.env, a) }); perr != nil || !cacheable {
			return CacheKey{}, false
		}
		key.Scanner = part
	}
	return key, true
}

// resultLookup is a bounty's lookup in the result cache before its scan:
// a hit (the analysis, and the generation it was made by, held), or a
// miss, after which the bounty scans and stores its analysis (store) and
// ends its lead of the key's scan (done).
type resultLookup struct {
	hit      bool
	analysis Analysis
	gen      *generation // of a hit: held, released by the answer stage

	cacheable bool
	lead      chan struct{} // closed by done: the bounty led the scan of key
	key       CacheKey
}

// lookupResult looks a's analysis up in the result cache. While another
// bounty scans the same artifact with the same definitions, it waits for
// that scan (until ctx ends) and looks again: a file met twice at once is
// scanned once. Lookups are counted, one per bounty.
func (e *Engine) lookupResult(ctx context.Context, a Artifact) resultLookup {
	r := e.results
	if r == nil {
		return resultLookup{}
	}
	for {
		g := e.acquireEnv()
		key, ok := e.cacheKey(g, a)
		if !ok {
			e.releaseEnv(g)
			return resultLookup{}
		}
		if an, hit := r.cache.Get(ctx, key); hit {
			r.tel.CacheLookup(ctx, "hit")
			return resultLookup{hit: true, analysis: an, gen: g}
		}
		e.releaseEnv(g)
		r.mu.Lock()
		busy, waiting := r.scanning[key]
		if !waiting {
			lead := make(chan struct{})
			r.scanning[key] = lead
			r.mu.Unlock()
			r.tel.CacheLookup(ctx, "miss")
			return resultLookup{cacheable: true, lead: lead, key: key}
		}
		r.mu.Unlock()
		select {
		case <-busy: // its analysis is in the cache, or it failed: look again
		case <-ctx.Done():
			r.tel.CacheLookup(ctx, "miss")
			return resultLookup{}
		}
	}
}

// storeResult puts the analysis a scan of a by generation g made, unless
// it must not be cached: the bounty's ctx ended (the analysis may be what a
// cut-short scan returned), it is a special result, or g is no longer the
// generation serving (an update replaced it during the scan).
func (e *Engine) storeResult(ctx context.Context, l resultLookup, g *generation, a Artifact, an Analysis) {
	if !l.cacheable || ctx.Err() != nil || isSpecial(an) || !e.envs.currentIs(g) {
		return
	}
	key, ok := e.cacheKey(g, a)
	if !ok {
		return
	}
	e.results.cache.Put(context.WithoutCancel(ctx), key, an)
}

// done ends the lookup's lead of its key's scan: bounties waiting for it
// look again.
func (e *Engine) doneResult(l resultLookup) {
	if l.lead == nil {
		return
	}
	r := e.results
	r.mu.Lock()
	if r.scanning[l.key] == l.lead {
		delete(r.scanning, l.key)
	}
	r.mu.Unlock()
	close(l.lead)
}

// isSpecial reports whether a is one of the protocol's special results
// (a SKIPPED* comment).
func isSpecial(a Analysis) bool {
	for _, c := range a.Metadata.Comments {
		if strings.HasPrefix(c, CommentSkipped) {
			return true
		}
	}
	return false
}
