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

// task is what flows through the stages of one bounty.
type task struct {
	worker   *worker
	bounty   *Bounty // the run's
	env      *Env    // the worker's
	content  *fetch.Content
	artifact Artifact
	mimetype string // detected already (local inputs), else ""
	analysis Analysis
	decided  bool // the answer is settled (a special result): skip the scan
}

// process answers one bounty on worker w.
func (e *Engine) process(ctx context.Context, w *worker, b Bounty) Result {
	res := Result{Bounty: b}
	if err := b.Validate(); err != nil {
		res.Err = err
		e.finish(ctx, &res, e.cfg.logger)
		return res
	}
	now := time.Now()
	if e.cfg.discardExpired && expired(b, now) {
		res.Err = fmt.Errorf("%w: at %s, %s after its expiration", ErrExpired, now.UTC().Format(time.RFC3339), now.Sub(b.Expiration).Round(time.Millisecond))
		e.finish(ctx, &res, e.cfg.logger)
		return res
	}
	r := e.newRun(ctx, w, b, now)
	defer r.release()
	return e.runBounty(r, nil)
}

// runBounty answers r's bounty: fetch (unless content, already fetched,
// is given: runBounty owns it from then on), identify, accept, scan, then
// bid, enrich, validate, deliver and the hooks (see conclude). When the scan
// overran its deadline and the watchdog settled the bounty, it returns the
// watchdog's result once the scan returned.
func (e *Engine) runBounty(r *bountyRun, content *fetch.Content) Result {
	t := r.task
	b := *t.bounty
	t.content = content
	if content != nil {
		t.mimetype = b.MIMEType // detected from content by analyzeLocal
	}
	defer func() {
		if t.content != nil {
			_ = t.content.Close()
		}
	}()
	env, err := e.workerEnv(r, r.w)
	if err == nil {
		t.env = env
		_, err = e.front(r, t)
	}
	if !r.claim() {
		res := r.wait()
		e.cfg.logger.Warn("a scan returned after its bounty was settled without it; its result is dropped",
			"bounty", b.ID.String(), "err", err, "verdict", t.analysis.Verdict)
		return res
	}
	res := Result{Bounty: b, Err: err}
	if err != nil && r.Err() != nil && !errors.Is(context.Cause(r), ErrTimeout) {
		// The caller, the consumer or Shutdown gave up on this bounty
		// (not its deadline): no answer, so that a broker hands it to
		// another worker rather than take an "unknown" for it.
		res.Err = fmt.Errorf("bounty abandoned before its answer: %w", context.Cause(r))
		e.finish(r.parent, &res, e.cfg.logger)
		return res
	}
	e.conclude(r.parent, t, &res)
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
	if _, verr := e.back(ctx, t); verr != nil {
		// The scanner's analysis would be refused: answer unknown instead.
		res.Err = errors.Join(res.Err, verr)
		t.analysis = Skipped(verr)
		if _, err := e.back(ctx, t); err != nil { // cannot fail for a special result
			res.Err = errors.Join(res.Err, err)
		}
	}
	res.Analysis = t.analysis
	if b := *t.bounty; b.ResponseURL != "" {
		if err := e.deliver(ctx, b, res.Analysis); err != nil {
			res.Err = errors.Join(res.Err, err)
		} else {
			res.Delivered = true
		}
	}
	e.finish(ctx, res, e.cfg.logger)
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

// frontStages composes the stages that lead to the scanner's analysis.
func (e *Engine) frontStages() pipeline.Stage[*task, *task] {
	return pipeline.Then(pipeline.Then(pipeline.Then(
		pipeline.Recover(e.fetchStage),
		pipeline.Recover(e.identifyStage)),
		pipeline.Recover(e.acceptStage)),
		e.scanStage)
}

// backStages composes the stages that turn an analysis into an answer.
func (e *Engine) backStages() pipeline.Stage[*task, *task] {
	return pipeline.Then(pipeline.Then(
		pipeline.Recover(e.bidStage),
		pipeline.Recover(e.enrichStage)),
		pipeline.Recover(validateStage))
}

// fetchStage reads the artifact (unless it came with the task), checking
// its sha256 against the bounty's.
func (e *Engine) fetchStage(ctx context.Context, t *task) (*task, error) {
	b := *t.bounty
	if t.content == nil {
		if b.ArtifactType == URLArtifact {
			t.content = fetch.FromBytes([]byte(b.ArtifactURI))
		} else {
			c, err := e.cfg.policy.Fetch(ctx, b.ArtifactURI, b.SHA256)
			if err != nil {
				if cause := context.Cause(ctx); errors.Is(cause, ErrTimeout) {
					err = fmt.Errorf("%w: %w", cause, err)
				}
				return t, kind(ErrFetch, err)
			}
			t.content = c
		}
	} else if b.SHA256 != "" && b.ArtifactType == FileArtifact && t.content.SHA256() != b.SHA256 {
		return t, kind(ErrFetch, &fetch.ChecksumError{Want: b.SHA256, Got: t.content.SHA256()})
	}
	return t, nil
}

// identifyStage makes the Artifact the scanner sees: hashes from the fetch,
// the mimetype detected from the first bytes.
func (e *Engine) identifyStage(_ context.Context, t *task) (*task, error) {
	b := *t.bounty
	if t.mimetype == "" {
		t.artifact = NewArtifact(b.ArtifactType, b.ArtifactURI, t.content)
		return t, nil
	}
	t.artifact = Artifact{Type: b.ArtifactType, URI: b.ArtifactURI, SHA256: t.content.SHA256(),
		Size: t.content.Size(), MIMEType: t.mimetype, content: t.content}
	return t, nil
}

// acceptStage answers UNSUPPORTED what the scanner does not handle.
func (e *Engine) acceptStage(_ context.Context, t *task) (*task, error) {
	if a, ok := e.orig.(Acceptor); ok && !a.Accepts(t.artifact) {
		t.analysis, t.decided = Unsupported(), true
	}
	return t, nil
}

// scanStage runs the scanner with panics recovered: on the worker's own
// goroutine, or with WithScanIsolation on the worker's scanning goroutine,
// walked away from at ctx's deadline.
func (e *Engine) scanStage(ctx context.Context, t *task) (*task, error) {
	if t.decided {
		return t, nil
	}
	var a Analysis
	var err error
	if e.cfg.isolate {
		env, art := *t.env, t.artifact // the scan may outlive t
		a, err = t.worker.scan(ctx, func(ctx context.Context) (Analysis, error) {
			return e.scanner.Scan(ctx, env, art)
		})
	} else if perr := pipeline.Protect(func() { a, err = e.scanner.Scan(ctx, *t.env, t.artifact) }); perr != nil {
		err = perr
	}
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

// bidStage fills the bid of malicious and benign assertions.
func (e *Engine) bidStage(_ context.Context, t *task) (*task, error) {
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

// enrichStage stamps the engine's head metadata under the analysis.
func (e *Engine) enrichStage(_ context.Context, t *task) (*task, error) {
	t.analysis.Metadata = t.analysis.Metadata.merge(e.env.Load().head)
	return t, nil
}

func validateStage(_ context.Context, t *task) (*task, error) {
	return t, Validate(*t.bounty, t.analysis)
}

// deliver posts the answer with its own context: the caller may go away,
// the bounty's expiration (and a hard shutdown) still bound it.
func (e *Engine) deliver(ctx context.Context, b Bounty, a Analysis) error {
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(e.hard, cancel)
	defer stop()
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

// finish logs the result and runs the hooks: the scanner's, then the
// host's. A panicking hook is recovered and logged.
func (e *Engine) finish(ctx context.Context, res *Result, log *slog.Logger) {
	if res.Err != nil {
		log.Warn("bounty failed", "bounty", res.Bounty.ID.String(), "err", res.Err, "answered", res.Answered, "verdict", res.Analysis.Verdict)
		e.reportError(context.WithoutCancel(ctx), res.Bounty, res.Err)
		return
	}
	if log.Enabled(ctx, slog.LevelDebug) {
		log.Debug("bounty answered", "bounty", res.Bounty.ID.String(), "verdict", res.Analysis.Verdict, "bid", res.Analysis.Bid, "delivered", res.Delivered)
	}
	h, ok := e.orig.(SuccessHook)
	if !ok && len(e.cfg.onSuccess) == 0 {
		return
	}
	hctx := context.WithoutCancel(ctx)
	if ok {
		e.runHook("scanner OnSuccess", func() { h.OnSuccess(hctx, res.Bounty, res.Analysis) })
	}
	for _, h := range e.cfg.onSuccess {
		e.runHook("OnSuccess", func() { h(hctx, res.Bounty, res.Analysis) })
	}
}

func (e *Engine) reportError(ctx context.Context, b Bounty, err error) {
	if h, ok := e.orig.(ErrorHook); ok {
		e.runHook("scanner OnError", func() { h.OnError(ctx, b, err) })
	}
	for _, h := range e.cfg.onError {
		e.runHook("OnError", func() { h(ctx, b, err) })
	}
}

func (e *Engine) runHook(name string, fn func()) {
	if err := pipeline.Protect(fn); err != nil {
		e.cfg.logger.Error("hook panicked", "hook", name, "err", err)
	}
}
