package psengine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/polyswarm/psengine/fetch"
	"github.com/polyswarm/psengine/pipeline"
)

// task is one bounty on its way through the steps.
type task struct {
	worker   *worker
	bounty   Bounty
	env      *Env // the worker's
	content  *fetch.Content
	artifact Artifact
	mimetype string // detected already (local inputs), else ""
	analysis Analysis
	decided  bool        // the answer is settled (a special result): skip the scan
	job      *Job        // the broker's job that brought the bounty, if any
	gen      *generation // the engine Env it is answered with
}

// step is one named stage of the engine's pipeline. Each is a thin adapter
// over a plain function that a test or a debugger can call alone: the fetch
// policy's Fetch, NewArtifact, the scanner's Acceptor, the Scanner itself,
// the BidStrategy, Validate.
type step struct {
	name   string
	run    pipeline.Stage[*task, *task] // panics recovered
	traced bool                         // in a span of its own (see telemetry.go)
}

func newStep(name string, s pipeline.Stage[*task, *task]) step {
	return step{name: name, run: pipeline.Recover(s), traced: tracedSteps[name]}
}

// tracedSteps are the steps with a span of their own; the others are
// instants next to a fetch or a scan, not worth a span's cost.
var tracedSteps = map[string]bool{"fetch": true, "identify": true, "scan": true, "bid": true}

// frontSteps lead to the scanner's analysis; they run under the bounty's
// deadline, each only while it has not passed.
func (e *Engine) frontSteps() []step {
	return []step{
		newStep("fetch", e.fetchStep),
		newStep("identify", identifyStep),
		newStep("accept", e.acceptStep),
		newStep("scan", e.scanStep),
	}
}

// backSteps turn an analysis into an answer.
func (e *Engine) backSteps() []step {
	return []step{
		newStep("bid", e.bidStep),
		newStep("enrich", e.enrichStep),
		newStep("validate", validateStep),
	}
}

// runSteps runs steps in order on t until one fails; with stopOnDone, it
// stops too when ctx ends between two steps.
func (e *Engine) runSteps(ctx context.Context, steps []step, t *task, stopOnDone bool) error {
	for _, s := range steps {
		if stopOnDone && ctx.Err() != nil {
			if cause := context.Cause(ctx); errors.Is(cause, ErrTimeout) {
				return fmt.Errorf("%w: before %s", cause, s.name)
			}
			return context.Cause(ctx)
		}
		if !s.traced {
			if _, err := s.run(ctx, t); err != nil {
				return err
			}
			continue
		}
		if err := e.tel.step(ctx, s.name, func(ctx context.Context) error {
			_, err := s.run(ctx, t)
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// process answers one bounty on worker w; job is the broker's job that
// brought it, if any (see handle).
func (e *Engine) process(ctx context.Context, w *worker, b Bounty, job *Job) (res Result) {
	ctx, span := e.tel.startBounty(ctx, b)
	defer func() { e.tel.endBounty(ctx, span, res) }()
	res = Result{Bounty: b}
	if err := b.Validate(); err != nil {
		res.Err = err
		e.finish(ctx, &res)
		return res
	}
	now := time.Now()
	b = e.withWindow(ctx, b, now)
	res.Bounty = b
	if e.cfg.discardExpired && expired(b, now) {
		res.Err = fmt.Errorf("%w: at %s, %s after its expiration", ErrExpired, now.UTC().Format(time.RFC3339), now.Sub(b.Expiration).Round(time.Millisecond))
		e.finish(ctx, &res)
		return res
	}
	if job != nil && job.Answer != nil {
		// Answered already; the delivery did not finish: deliver again.
		e.cfg.logger.InfoContext(ctx, "delivering the answer kept for a bounty, without scanning it again", "bounty", b.ID.String(), "attempt", job.Attempt)
		res.Analysis, res.Answered = *job.Answer, true
		e.deliverAndFinish(ctx, &res)
		return res
	}
	rctx, cancel := e.bountyContext(ctx, w, e.scanDeadline(b.Expiration, now))
	defer cancel()
	return e.runBounty(ctx, rctx, w, b, nil, "", job)
}

// runBounty answers b on w: the front steps under rctx (the bounty's
// deadline), unless content, already fetched (mime detected from it), is
// given: runBounty owns it from then on; then bid, enrich, validate, the
// delivery and the hooks under ctx (see conclude).
func (e *Engine) runBounty(ctx, rctx context.Context, w *worker, b Bounty, content *fetch.Content, mime string, job *Job) Result {
	t := &task{worker: w, bounty: b, content: content, mimetype: mime, job: job, gen: e.acquireEnv()}
	defer func() {
		if t.content != nil {
			_ = t.content.Close()
		}
		e.releaseEnv(t.gen)
	}()
	env, err := t.gen.env, error(nil)
	if e.procs == nil { // with the process backend, workers set up in their children
		env, err = e.workerEnv(rctx, w, t.gen.env)
	}
	if err == nil {
		t.env = env
		err = e.runSteps(rctx, e.front, t, true)
	}
	res := Result{Bounty: b, Err: err}
	if err != nil && rctx.Err() != nil && !errors.Is(context.Cause(rctx), ErrTimeout) {
		// The caller, the consumer or Shutdown gave up on this bounty
		// (not its deadline): no answer, so that a broker hands it to
		// another worker rather than take an "unknown" for it.
		res.Err = fmt.Errorf("bounty abandoned before its answer: %w", e.givenUp(rctx))
		e.finish(ctx, &res)
		return res
	}
	e.conclude(ctx, t, &res)
	return res
}

// conclude turns t's analysis (or, when res.Err is set and t's answer is not
// decided, the special result for res.Err) into the answer: bid, enrich,
// validate, then delivers it when the bounty has a response URL and runs the
// hooks.
func (e *Engine) conclude(ctx context.Context, t *task, res *Result) {
	res.Answered = true
	if res.Err != nil && !t.decided {
		t.analysis = answerFor(res.Err)
	}
	if verr := e.runSteps(ctx, e.back, t, false); verr != nil {
		// The scanner's analysis would be refused: answer unknown instead.
		res.Err = errors.Join(res.Err, verr)
		t.analysis = Skipped(verr)
		if err := e.runSteps(ctx, e.back, t, false); err != nil { // cannot fail for a special result
			res.Err = errors.Join(res.Err, err)
		}
	}
	res.Analysis = t.analysis
	if keeper, ok := e.broker.(AnswerKeeper); ok && t.job != nil && t.bounty.ResponseURL != "" {
		// Kept before delivering: should the delivery not finish, the
		// job comes back with its answer, not to be scanned again.
		if err := keeper.KeepAnswer(ctx, *t.job, res.Analysis); err != nil {
			e.cfg.logger.WarnContext(ctx, "the broker did not keep the answer; a redelivery would scan again", "bounty", t.bounty.ID.String(), "err", err)
		}
	}
	e.deliverAndFinish(ctx, res)
}

// deliverAndFinish delivers res's answer when its bounty has a response
// URL, then logs and runs the hooks.
func (e *Engine) deliverAndFinish(ctx context.Context, res *Result) {
	if b := res.Bounty; b.ResponseURL != "" {
		err := e.tel.step(ctx, "deliver", func(ctx context.Context) error { return e.deliver(ctx, b, res.Analysis) })
		e.tel.delivered(ctx, err)
		if err != nil {
			res.Err = errors.Join(res.Err, err)
		} else {
			res.Delivered = true
		}
	}
	e.finish(ctx, res)
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

// fetchStep reads the artifact (unless it came with the task), checking
// its sha256 against the bounty's.
func (e *Engine) fetchStep(ctx context.Context, t *task) (*task, error) {
	b := t.bounty
	switch {
	case t.content != nil:
		if b.SHA256 != "" && b.ArtifactType == FileArtifact && t.content.SHA256() != b.SHA256 {
			return t, kind(ErrFetch, &fetch.ChecksumError{Want: b.SHA256, Got: t.content.SHA256()})
		}
	case b.ArtifactType == URLArtifact:
		t.content = fetch.FromBytes([]byte(b.ArtifactURI))
	default:
		c, err := e.cfg.policy.Fetch(ctx, b.ArtifactURI, b.SHA256)
		if err != nil {
			if cause := context.Cause(ctx); errors.Is(cause, ErrTimeout) {
				err = fmt.Errorf("%w: %w", cause, err)
			}
			return t, kind(ErrFetch, err)
		}
		e.tel.fetchBytes.Add(ctx, c.Size())
		t.content = c
	}
	return t, nil
}

// identifyStep makes the Artifact the scanner sees: hashes from the fetch,
// the mimetype detected from the first bytes.
func identifyStep(_ context.Context, t *task) (*task, error) {
	b := t.bounty
	if t.mimetype == "" {
		t.artifact = NewArtifact(b.ArtifactType, b.ArtifactURI, t.content)
		return t, nil
	}
	t.artifact = Artifact{Type: b.ArtifactType, URI: b.ArtifactURI, SHA256: t.content.SHA256(),
		Size: t.content.Size(), MIMEType: t.mimetype, content: t.content}
	return t, nil
}

// acceptStep answers UNSUPPORTED what the scanner does not handle.
func (e *Engine) acceptStep(_ context.Context, t *task) (*task, error) {
	if a, ok := e.orig.(Acceptor); ok && !a.Accepts(t.artifact) {
		t.analysis, t.decided = Unsupported(), true
	}
	return t, nil
}

// scanStep runs the scanner (see Engine.scan) and classifies its failure.
func (e *Engine) scanStep(ctx context.Context, t *task) (*task, error) {
	if t.decided {
		return t, nil
	}
	var a Analysis
	var err error
	start := time.Now()
	if e.procs != nil {
		a, err = e.scanInChild(ctx, t.worker, t.artifact)
	} else {
		a, err = e.scan(ctx, t.worker, *t.env, t.artifact, t.gen)
	}
	e.tel.scanned(ctx, time.Since(start))
	if err != nil {
		switch {
		case errors.Is(context.Cause(ctx), ErrTimeout): // the deadline ended it, whatever it says
			return t, fmt.Errorf("%w: %w", ErrTimeout, err)
		case errors.Is(err, ErrUnsupported), errors.Is(err, ErrEncrypted):
			t.analysis, t.decided = answerFor(err), true
			return t, nil
		}
		return t, kind(ErrScan, err)
	}
	t.analysis = a
	return t, nil
}

// bidStep fills the bid of malicious and benign assertions.
func (e *Engine) bidStep(_ context.Context, t *task) (*task, error) {
	a := &t.analysis
	if t.bounty.IsVote() {
		a.Bid = 0
		return t, nil
	}
	rules := t.bounty.Rules.OrDefault()
	switch {
	case !a.Verdict.bids():
	case a.Bid == 0:
		a.Bid = e.cfg.bidder(rules, *a)
	default:
		a.Bid = rules.Clamp(a.Bid)
	}
	return t, nil
}

// enrichStep stamps the engine's head metadata under the analysis.
func (e *Engine) enrichStep(_ context.Context, t *task) (*task, error) {
	t.analysis.Metadata = t.analysis.Metadata.merge(e.headOf(t))
	return t, nil
}

func validateStep(_ context.Context, t *task) (*task, error) {
	return t, Validate(t.bounty, t.analysis)
}

// deliver posts the answer with its own context: the caller may go away,
// the bounty's expiration (and Shutdown giving up) still bound it.
func (e *Engine) deliver(ctx context.Context, b Bounty, a Analysis) error {
	dctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	defer context.AfterFunc(e.hard, func() { cancel(context.Cause(e.hard)) })()
	if !b.Expiration.IsZero() {
		var c2 context.CancelFunc
		dctx, c2 = context.WithDeadline(dctx, b.Expiration)
		defer c2()
	}
	var err error
	if perr := pipeline.Protect(func() { err = e.cfg.deliverer.Deliver(dctx, b, NewAnswer(b, a)) }); perr != nil {
		err = perr
	}
	return kind(ErrDeliver, err)
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

// headOf is the head of the Env t's bounty is answered with.
func (e *Engine) headOf(t *task) Metadata {
	if t.gen != nil {
		return t.gen.env.head
	}
	return e.Env().head
}
