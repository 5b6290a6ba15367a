package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/fetch"
	"github.com/polyswarm/psengine/pipeline"
	"golang.org/x/sync/semaphore"
)

// DefaultInFlight is the default of analyze's --in-flight: how many
// bounties `analyze --backend NAME` keeps queued and unanswered at once.
const DefaultInFlight = 64

// expiredResubmits bounds how often a forged bounty that expired in the
// queue (no worker reached it in time) is forged again and resubmitted
// before its failure is reported: a clock far off between this machine and
// the workers would otherwise expire it forever.
const expiredResubmits = 3

// ErrStalled: analyze --backend stopped submitting because no worker
// showed a sign of life (an answer, or a bounty reported expired) for a
// bounty's whole lifetime while one went unanswered: no worker serves the
// queue, or they are stuck. Waiting a lifetime per window for the rest
// would only make the run last hours.
var ErrStalled = errors.New("not submitted: no worker answered during a bounty's lifetime")

// queueFullBackoff paces resubmissions to a full queue: a batch larger than
// the queue can take waits for room, until the run is cancelled.
var queueFullBackoff = pipeline.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second}

// batchConfig shapes `analyze --backend NAME`.
type batchConfig struct {
	// ttl is each forged bounty's window from when a worker can be
	// expected to reach it: --timeout plus the delivery margin, or
	// psengine.DefaultLocalTTL.
	ttl time.Duration
	// inFlight bounds the bounties submitted and not yet answered.
	inFlight int
}

// chunk is how many bounties go to the backend in one Session.Analyze call:
// a few per window, so that the window refills while earlier ones are
// answered, without one call (a results watch, for NATS) per bounty.
func (c batchConfig) chunk() int { return min(max(c.inFlight/8, 1), 32) }

// batch is one `analyze --backend NAME` run.
type batch struct {
	p     *Program
	sess  Session
	log   *slog.Logger
	kind  string
	cfg   batchConfig
	ins   []input
	slots []chan analyzed // one per input, each filled exactly once
	sem   *semaphore.Weighted
	wg    sync.WaitGroup

	pending atomic.Int64 // submitted, not answered
	rate    answerRate
	// alive is the time (UnixNano) of the last sign of life of the
	// workers: an answer, or a bounty reported expired (the start, first).
	alive atomic.Int64
	// stalled is set (an ErrStalled error) once a bounty went unanswered
	// with no sign of life for cfg.ttl: nothing more is submitted.
	stalled atomic.Pointer[error]
}

// pendingReq is one input on its way through the backend.
type pendingReq struct {
	idx       int
	req       Request
	first     time.Time // first submission, for the time to answer
	resubmits int       // after expiring in the queue
	full      int       // submissions refused by a full queue, in a row
}

// remoteResults answers the inputs through a backend session and yields
// their results in input order, each as soon as it and those before it
// are answered. Each forged bounty gets its own expiration, from when a
// worker can be expected to reach it: bounties are submitted in a window
// of cfg.inFlight, each as the window has room, its expiration being the
// time of its submission, plus the time the bounties ahead of it should
// take at the rate answers have been coming back (doubled), plus cfg.ttl.
// One that expires in the queue all the same is forged again and
// resubmitted (up to expiredResubmits times); one a full queue refuses is
// resubmitted after a pause, until ctx ends. Inputs that cannot be turned
// into a bounty fail alone. Stopping early cancels what is left and waits
// for it.
func (p *Program) remoteResults(ctx context.Context, sess Session, log *slog.Logger, kind string, ins []input, cfg batchConfig) iter.Seq[analyzed] {
	return func(yield func(analyzed) bool) {
		ctx, cancel := context.WithCancel(ctx)
		b := &batch{p: p, sess: sess, log: log, kind: kind, cfg: cfg, ins: ins,
			slots: make([]chan analyzed, len(ins)), sem: semaphore.NewWeighted(int64(cfg.inFlight))}
		for i := range b.slots {
			b.slots[i] = make(chan analyzed, 1)
		}
		b.alive.Store(time.Now().UnixNano())
		b.wg.Add(1)
		go b.schedule(ctx)
		defer func() {
			cancel()
			b.wg.Wait()
		}()
		for _, slot := range b.slots {
			if !yield(<-slot) {
				return
			}
		}
	}
}

// schedule forges and submits the inputs in order as the window has room.
func (b *batch) schedule(ctx context.Context) {
	defer b.wg.Done()
	n := b.cfg.chunk()
	for i := 0; i < len(b.ins); i += n {
		end := min(i+n, len(b.ins))
		err := b.sem.Acquire(ctx, int64(end-i))
		if err == nil {
			if stalled := b.stalled.Load(); stalled != nil {
				b.sem.Release(int64(end - i))
				err = *stalled
			}
		} else {
			err = context.Cause(ctx)
		}
		if err != nil {
			for j := i; j < len(b.ins); j++ {
				b.fill(j, psengine.Result{Err: err}, 0)
			}
			return
		}
		var reqs []pendingReq
		for j := i; j < end; j++ {
			in := b.ins[j]
			if in.err != nil {
				b.fail(j, psengine.Result{Err: in.err})
				continue
			}
			now := time.Now()
			req, err := b.p.request(ctx, b.log, b.kind, in.name, now, b.window(now))
			if err != nil {
				b.fail(j, psengine.Result{Bounty: req.Bounty, Err: err})
				continue
			}
			b.pending.Add(1)
			reqs = append(reqs, pendingReq{idx: j, req: req, first: now})
		}
		if len(reqs) > 0 {
			b.wg.Add(1)
			go b.run(ctx, reqs)
		}
	}
}

// window is the lifetime to give a bounty forged now: the time the
// bounties already waiting should take, plus the per-artifact window.
func (b *batch) window(now time.Time) time.Duration {
	return b.rate.wait(now, b.pending.Load()) + b.cfg.ttl
}

// run submits reqs (one Session.Analyze call), fills their slots as the
// answers come, and resubmits those the queue expired or refused.
func (b *batch) run(ctx context.Context, reqs []pendingReq) {
	defer b.wg.Done()
	all := reqs
	defer func() {
		for _, r := range all {
			if r.req.Content != nil {
				_ = r.req.Content.Close()
			}
		}
	}()
	for len(reqs) > 0 {
		sub := make([]Request, len(reqs))
		for k, r := range reqs {
			sub[k] = r.req
		}
		var again []pendingReq
		k := 0
		for res := range b.sess.Analyze(ctx, sub) {
			if k == len(reqs) {
				break // more results than requests: a broken backend
			}
			r := reqs[k]
			k++
			if b.resubmit(ctx, &r, res) {
				again = append(again, r)
				continue
			}
			b.answer(r, res)
		}
		for ; k < len(reqs); k++ {
			b.answer(reqs[k], psengine.Result{Bounty: reqs[k].req.Bounty,
				Err: fmt.Errorf("%w: the backend gave no result", psengine.ErrClosed)})
		}
		if len(again) == 0 {
			break
		}
		// A full queue drains as workers answer: pause before trying again.
		if full := again[0].full; full > 0 {
			t := time.NewTimer(queueFullBackoff.Delay(full))
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		now := time.Now()
		for k := range again {
			if b.kind != "bounty" { // a bounty file's expiration is its author's
				again[k].req.Bounty.Expiration = now.Add(b.window(now)).UTC()
			}
		}
		reqs = again
	}
}

// resubmit tells whether r, whose backend result is res, goes to the queue
// again: refused by a full queue (until ctx ends), or a bounty forged here
// that expired before a worker reached it (up to expiredResubmits times).
func (b *batch) resubmit(ctx context.Context, r *pendingReq, res psengine.Result) bool {
	if res.Answered || ctx.Err() != nil {
		return false
	}
	switch {
	case errors.Is(res.Err, psengine.ErrQueueFull):
		r.full++
		if r.full == 1 {
			b.log.DebugContext(ctx, "the queue is full: waiting for room", "artifact", b.ins[r.idx].name)
		}
		return true
	case errors.Is(res.Err, psengine.ErrExpired) && b.kind != "bounty" && r.resubmits < expiredResubmits:
		r.resubmits++
		r.full = 0
		b.log.WarnContext(ctx, "resubmitting a bounty that expired in the queue before a worker reached it",
			"artifact", b.ins[r.idx].name, "resubmission", r.resubmits)
		return true
	}
	return false
}

// answer fills r's slot with its result from the backend and frees its
// place in the window.
func (b *batch) answer(r pendingReq, res psengine.Result) {
	now := time.Now()
	b.pending.Add(-1)
	switch {
	case res.Answered:
		b.rate.observe(now)
		b.alive.Store(now.UnixNano())
	case errors.Is(res.Err, psengine.ErrExpired): // a worker saw it
		b.alive.Store(now.UnixNano())
	case res.Err != nil && !errors.Is(res.Err, psengine.ErrQueueFull) &&
		now.Sub(time.Unix(0, b.alive.Load())) > b.cfg.ttl:
		err := fmt.Errorf("%w (%v): %w", ErrStalled, b.cfg.ttl, res.Err)
		if b.stalled.CompareAndSwap(nil, &err) {
			b.log.Error("no worker answered during a bounty's lifetime: submitting no more", "lifetime", b.cfg.ttl, "err", res.Err)
		}
	}
	b.fill(r.idx, res, max(now.Sub(r.first), time.Nanosecond))
	b.sem.Release(1)
}

// fail fills slot i with a failure before submission and frees its place
// in the window.
func (b *batch) fail(i int, res psengine.Result) {
	b.fill(i, res, 0)
	b.sem.Release(1)
}

func (b *batch) fill(i int, res psengine.Result, took time.Duration) {
	b.slots[i] <- analyzed{name: b.ins[i].name, res: res, took: took}
}

// answerRate estimates how fast the workers answer, from the times of the
// latest answers.
type answerRate struct {
	mu    sync.Mutex
	times [32]time.Time // a ring
	n     int           // answers seen
}

func (r *answerRate) observe(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.times[r.n%len(r.times)] = t
	r.n++
}

// wait is how long the ahead answers should take at the recent rate,
// doubled: workers slow down (a loaded machine, a big file), and a bounty
// that expires too late only makes a vanished worker's absence longer to
// notice, while one that expires too early is wasted or answered unknown.
// Zero before two answers came back.
func (r *answerRate) wait(now time.Time, ahead int64) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := min(r.n, len(r.times))
	if seen < 2 || ahead <= 0 {
		return 0
	}
	newest := r.times[(r.n-1)%len(r.times)]
	oldest := r.times[(r.n-seen)%len(r.times)]
	// Since the newest answer the workers may have slowed down: count the
	// time since then as part of the span.
	span := max(newest.Sub(oldest), 0) + max(now.Sub(newest), 0)
	per := span / time.Duration(seen-1)
	return 2 * per * time.Duration(ahead)
}

// request makes the bounty for one argument of `analyze --backend`, the
// way Engine.Analyze forges local bounties (with expiration now+ttl),
// keeping the content of local inputs for the backend to stage.
func (p *Program) request(ctx context.Context, log *slog.Logger, kind, arg string, now time.Time, ttl time.Duration) (Request, error) {
	local := fetch.Local()
	local.Stdin = p.Stdin
	switch kind {
	case "url":
		sum := sha256.Sum256([]byte(arg))
		return Request{Bounty: psengine.LocalBounty(psengine.URLArtifact, arg, hex.EncodeToString(sum[:]),
			psengine.URIListType, now, ttl)}, nil
	case "bounty":
		b, err := p.readBounty(log, arg)
		if err != nil {
			return Request{}, err
		}
		if b.ArtifactType != psengine.FileArtifact || !isLocalURI(b.ArtifactURI) {
			return Request{Bounty: b}, nil
		}
		c, err := local.Fetch(ctx, b.ArtifactURI, b.SHA256)
		if err != nil {
			return Request{Bounty: b}, fmt.Errorf("%w: %w", psengine.ErrFetch, err)
		}
		return Request{Bounty: b, Content: c}, nil
	default:
		c, err := local.Fetch(ctx, arg, "")
		if err != nil {
			return Request{}, fmt.Errorf("%w: %w", psengine.ErrFetch, err)
		}
		b := psengine.LocalBounty(psengine.FileArtifact, arg, c.SHA256(), psengine.DetectMIMEType(c.Head()), now, ttl)
		if !isLocalURI(arg) {
			_ = c.Close() // http(s) and data: travel as they are
			c = nil
		}
		return Request{Bounty: b, Content: c}, nil
	}
}
