package psengine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/polyswarm/psengine/broker"
	"github.com/polyswarm/psengine/fetch"
	"github.com/polyswarm/psengine/pipeline"
	"github.com/polyswarm/psengine/protocol"
)

// A bounty's way through the engine, stage by stage. Each stage holds only
// the resource it waits on, and only while it waits on it:
//
//	fetch    a fetch slot (WithFetchers): reading the artifact is I/O
//	scan     a worker (WithWorkers): the scarce resource, held for the scan only
//	answer   nothing: bid, enrich, validate are instants
//	keep     the broker's write (batched by a durable broker)
//	deliver  nothing of ours: the deliverer's own per-host bound, and the
//	         delivery's own deadline (the expiration, or the delivery window)
//	finish   the hooks
//
// How many bounties are between their first and last stage at once is
// bounded by WithInFlight (the consumers of a broker; the concurrency of
// AnalyzeEach). Each stage is a pipeline.Stage over the value it turns into
// the next (a fetched artifact is not a scanned one), a thin adapter over a
// plain function a test or a debugger can call alone: the fetch policy's
// Fetch, NewArtifact, the scanner's Acceptor, the Scanner itself, the
// BidStrategy, Validate, the Deliverer.

// request is a bounty the engine is to answer.
type request struct {
	bounty Bounty
	job    *broker.Job // the broker's job that brought it, if any
	// content, when set, was fetched already (a local input) and mime
	// detected from it; the request owns it.
	content *fetch.Content
	mime    string
}

// fetched is a bounty with its artifact read.
type fetched struct {
	request
	artifact Artifact
}

// scanned is a bounty with its analysis: the scanner's, or the special
// result settled before or instead of the scan (decided). gen is the
// engine Env it was scanned with (held until the answer is made).
type scanned struct {
	bounty   Bounty
	analysis Analysis
	err      error // why the analysis is a special result, if it is
	gen      *generation
}

// answered is a bounty with the answer to give, encoded once.
type answered struct {
	bounty Bounty
	answer Answer // its Analysis is the bounty's answer
	err    error  // why the answer is a special result, if it is
}

// fetchStage reads the artifact, holding a fetch slot, under ctx (the
// bounty's deadline).
func (e *Engine) fetchStage(ctx context.Context, r request) (fetched, error) {
	b := r.bounty
	switch {
	case r.content != nil:
		if b.SHA256 != "" && b.ArtifactType == FileArtifact && r.content.SHA256() != b.SHA256 {
			return fetched{request: r}, kind(ErrFetch, &fetch.ChecksumError{Want: b.SHA256, Got: r.content.SHA256()})
		}
	case b.ArtifactType == URLArtifact:
		r.content, r.mime = fetch.FromBytes([]byte(b.ArtifactURI)), URIListType
	default:
		err := e.tel.Step(ctx, "fetch", func(ctx context.Context) error {
			if err := acquire(ctx, e.fetches); err != nil {
				return err
			}
			defer func() { <-e.fetches }()
			c, err := e.cfg.policy.Fetch(ctx, b.ArtifactURI, b.SHA256)
			if err != nil {
				return err
			}
			e.tel.Fetched(ctx, c.Size())
			r.content = c
			return nil
		})
		if err != nil {
			if deadlinePassed(ctx) && !errors.Is(err, ErrTimeout) {
				err = fmt.Errorf("%w: %w", context.Cause(ctx), err)
			}
			return fetched{request: r}, kind(ErrFetch, err)
		}
	}
	var f fetched
	_ = e.tel.Step(ctx, "identify", func(context.Context) error { f = identify(r); return nil })
	return f, nil
}

// identify makes the Artifact the scanner sees: hashes from the fetch, the
// mimetype detected from the first bytes.
func identify(r request) fetched {
	b := r.bounty
	if r.mime == "" {
		return fetched{request: r, artifact: NewArtifact(b.ArtifactType, b.ArtifactURI, r.content)}
	}
	return fetched{request: r, artifact: Artifact{Type: b.ArtifactType, URI: b.ArtifactURI, SHA256: r.content.SHA256(),
		Size: r.content.Size(), MIMEType: r.mime, content: r.content}}
}

// scanStage runs the scanner on a worker, unless the scanner does not
// accept the artifact (UNSUPPORTED), under ctx (the bounty's deadline). A
// failure of the scan is a special result, not an error: the error is
// returned only when ctx was given up on (not its deadline), and then no
// answer is made.
func (e *Engine) scanStage(ctx context.Context, f fetched) (scanned, error) {
	s := scanned{bounty: f.bounty}
	if a, ok := e.orig.(Acceptor); ok && !a.Accepts(f.artifact) {
		s.analysis, s.err = Unsupported(), nil
		s.gen = e.acquireEnv()
		return s, nil
	}
	// The result cache (cache.go): a hit is answered without a scan.
	cached := e.lookupResult(ctx, f.artifact)
	if cached.hit {
		s.analysis, s.gen = cached.analysis, cached.gen
		return s, nil
	}
	defer e.doneResult(cached)
	if e.runner.local() && f.job != nil {
		// Marked before it takes a worker: no fsync holds a worker. A
		// bounded number of jobs are marked at once (maxMarked), so that
		// a process death makes few suspects.
		if err := acquire(ctx, e.marked); err != nil {
			return s, err
		}
		defer func() { <-e.marked }()
		e.markScanning(ctx, f.job)
	}
	w, err := e.takeWorker(ctx)
	if err != nil {
		return s, err
	}
	defer e.giveWorker(w)
	s.gen = e.acquireEnv()
	var a Analysis
	err = e.tel.Step(ctx, "scan", func(ctx context.Context) error {
		start := time.Now()
		var err error
		a, err = e.runner.scan(ctx, w, s.gen, f.artifact)
		e.tel.Scanned(ctx, time.Since(start))
		return err
	})
	switch {
	case err == nil:
		s.analysis = a
		e.storeResult(ctx, cached, s.gen, f.artifact, a) // the result cache (cache.go)
	case ctx.Err() != nil && !deadlinePassed(ctx):
		e.releaseEnv(s.gen)
		return scanned{bounty: f.bounty}, err // given up on: no answer
	case deadlinePassed(ctx): // the deadline ended it, whatever it says
		s.err = fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(err, ErrUnsupported), errors.Is(err, ErrEncrypted):
		s.analysis = answerFor(err)
	case errors.Is(err, ErrSetup):
		s.err = err
	default:
		s.err = kind(ErrScan, err)
	}
	if s.err != nil {
		s.analysis = answerFor(s.err)
	}
	return s, nil
}

// markScanning tells a broker that records it (broker.ScanMarker) that job's scan
// is about to start in this process.
func (e *Engine) markScanning(ctx context.Context, job *broker.Job) {
	m, ok := e.broker.(broker.ScanMarker)
	if !ok || job == nil {
		return
	}
	if err := m.MarkScanning(context.WithoutCancel(ctx), *job); err != nil {
		e.cfg.logger.WarnContext(ctx, "the broker did not record the scan; should it end the process, the neighbours share the blame",
			"bounty", job.Bounty.ID.String(), "err", err)
	}
}

// answerStage turns an analysis into the answer: bid, enrich, validate. An
// analysis PolySwarm would refuse is answered unknown instead (the error
// says why). It releases the generation the analysis was made with.
func (e *Engine) answerStage(ctx context.Context, s scanned) (answered, error) {
	defer func() {
		if s.gen != nil {
			e.releaseEnv(s.gen)
		}
	}()
	head := e.Env().head
	if s.gen != nil {
		head = s.gen.env.head
	}
	out := answered{bounty: s.bounty, err: s.err}
	err := e.tel.Step(ctx, "bid", func(context.Context) error {
		var err error
		out.answer, err = e.makeAnswer(s.bounty, s.analysis, head)
		return err
	})
	if err != nil {
		// The scanner's analysis would be refused: answer unknown instead.
		out.err = errors.Join(out.err, err)
		if out.answer, err = e.makeAnswer(s.bounty, Skipped(err), head); err != nil { // cannot fail for a special result
			out.err = errors.Join(out.err, err)
		}
	}
	return out, nil
}

// makeAnswer bids, stamps the head, validates and encodes: the answer
// stage's steps, with panics recovered.
func (e *Engine) makeAnswer(b Bounty, a Analysis, head Metadata) (ans Answer, err error) {
	if perr := pipeline.Protect(func() {
		a = e.bidFor(b, a)
		a.Metadata = a.Metadata.Merge(head)
		ans, err = protocol.EncodeAnswer(b, a)
	}); perr != nil {
		return NewAnswer(b, a), perr
	}
	return ans, err
}

// bidFor fills the bid of a malicious or benign assertion.
func (e *Engine) bidFor(b Bounty, a Analysis) Analysis {
	if b.IsVote() {
		a.Bid = 0
		return a
	}
	rules := b.Rules.OrDefault()
	switch {
	case !a.Verdict.Bids():
	case a.Bid == 0:
		a.Bid = e.cfg.bidder(rules, a)
	default:
		a.Bid = rules.Clamp(a.Bid)
	}
	return a
}

// keepStage asks the broker to keep the answer of a job (broker.AnswerKeeper)
// before it is delivered: should the delivery not finish, the job comes
// back with its answer, not to be scanned again.
func (e *Engine) keepStage(ctx context.Context, job *broker.Job, a answered) {
	keeper, ok := e.broker.(broker.AnswerKeeper)
	if !ok || job == nil || a.bounty.ResponseURL == "" {
		return
	}
	// Kept whatever becomes of ctx now: the answer exists.
	if err := keeper.KeepAnswer(context.WithoutCancel(ctx), *job, a.answer.Analysis); err != nil {
		e.cfg.logger.WarnContext(ctx, "the broker did not keep the answer; a redelivery would scan again",
			"bounty", a.bounty.ID.String(), "err", err)
	}
}

// deliverStage delivers the answer when the bounty has a response URL,
// until the expiration or the delivery window from accepted passes,
// whichever is first, or dctx ends.
func (e *Engine) deliverStage(dctx context.Context, accepted time.Time, a answered) error {
	b := a.bounty
	if b.ResponseURL == "" {
		return nil
	}
	deadline := accepted.Add(e.cfg.deliveryWindow)
	if !b.Expiration.IsZero() && b.Expiration.Before(deadline) {
		deadline = b.Expiration
	}
	ctx, cancel := context.WithDeadline(dctx, deadline)
	defer cancel()
	err := e.tel.Step(ctx, "deliver", func(ctx context.Context) error {
		return protect(func() error { return e.cfg.deliverer.Deliver(ctx, b, a.answer) })
	})
	if err != nil && ctx.Err() != nil && dctx.Err() == nil && !errors.Is(err, ErrPermanent) {
		err = fmt.Errorf("%w (the delivery window of %v from %s ended it)", err, e.cfg.deliveryWindow, accepted.Format(time.RFC3339))
		if !b.Expiration.IsZero() && !b.Expiration.After(deadline) {
			err = fmt.Errorf("%w: the bounty expired", err)
		}
	}
	e.delivered(ctx, err)
	return kind(ErrDeliver, err)
}

// answerFor is the special result answering a bounty that failed with err.
func answerFor(err error) Analysis {
	switch {
	case errors.Is(err, ErrFetch):
		return CannotFetch(unwrapKind(err, ErrFetch))
	case errors.Is(err, ErrUnsupported):
		return Unsupported()
	case errors.Is(err, ErrEncrypted):
		return Encrypted()
	}
	return Skipped(err)
}

// unwrapKind drops the "kind: " prefix of an error made by kind(), for a
// shorter metadata.error.
func unwrapKind(err, k error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		if errs := j.Unwrap(); len(errs) == 2 && errs[0] == k {
			return errs[1]
		}
	}
	return err
}

// finish logs the result and runs the hooks, the scanner's then the
// host's: the error hooks when res.Err is set, the success hooks otherwise.
// A recovered panic is logged with its stack; a panicking hook is recovered
// and logged.
func (e *Engine) finish(ctx context.Context, res *Result) {
	log := e.cfg.logger
	hctx := context.WithoutCancel(ctx)
	if res.Err != nil {
		attrs := []any{"bounty", res.Bounty.ID.String(), "err", res.Err, "answered", res.Answered}
		if res.Answered {
			attrs = append(attrs, "verdict", res.Analysis.Verdict)
		}
		if pe, ok := errors.AsType[*PanicError](res.Err); ok {
			log.ErrorContext(ctx, "bounty failed: recovered a panic", append(attrs, "stack", string(pe.Stack))...)
		} else {
			log.WarnContext(ctx, "bounty failed", attrs...)
		}
		if h, ok := e.orig.(ErrorHook); ok {
			e.runHook(hctx, "scanner OnError", func() { h.OnError(hctx, *res) })
		}
		for _, h := range e.cfg.onError {
			e.runHook(hctx, "OnError", func() { h(hctx, *res) })
		}
		return
	}
	if log.Enabled(ctx, slog.LevelDebug) {
		log.DebugContext(ctx, "bounty answered", "bounty", res.Bounty.ID.String(), "verdict", res.Analysis.Verdict, "bid", res.Analysis.Bid, "delivered", res.Delivered)
	}
	if h, ok := e.orig.(SuccessHook); ok {
		e.runHook(hctx, "scanner OnSuccess", func() { h.OnSuccess(hctx, *res) })
	}
	for _, h := range e.cfg.onSuccess {
		e.runHook(hctx, "OnSuccess", func() { h(hctx, *res) })
	}
}

func (e *Engine) runHook(ctx context.Context, name string, fn func()) {
	if err := pipeline.Protect(fn); err != nil {
		attrs := []any{"hook", name, "err", err}
		if pe, ok := errors.AsType[*PanicError](err); ok {
			attrs = append(attrs, "stack", string(pe.Stack))
		}
		e.cfg.logger.ErrorContext(ctx, "hook panicked", attrs...)
	}
}

// acquire takes a slot of sem, or returns ctx's cause when ctx ends first.
func acquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	default:
	}
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
