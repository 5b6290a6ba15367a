package natsq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/deliver"
	"github.com/polyswarm/psengine/fetch"
)

// record is what the results bucket holds for one submitted bounty: its
// answer, or why there is none.
type record struct {
	Answer *psengine.Answer `json:"answer,omitempty"`
	Kind   string           `json:"kind,omitempty"` // why there is no answer
	Error  string           `json:"error,omitempty"`
}

// Kinds of records without an answer.
const (
	kindDead      = "dead-lettered"
	kindExpired   = "expired"
	kindMalformed = "malformed"
)

func (r record) err() error {
	var k error
	switch r.Kind {
	case kindDead:
		k = ErrDeadLettered
	case kindExpired:
		k = psengine.ErrExpired
	case kindMalformed:
		k = psengine.ErrMalformedBounty
	default:
		k = ErrNoAnswer
	}
	return fmt.Errorf("%w: %s", k, r.Error)
}

// resultKey returns the key of a ResultScheme response URL.
func resultKey(responseURL string) (string, bool) {
	key, ok := strings.CutPrefix(responseURL, ResultScheme+":")
	return key, ok && validKey(key)
}

// markerKey names the answered marker of a bounty's answer: one per bounty
// and destination, so the same bounty answered for two submitters counts
// as two answers.
func markerKey(b psengine.Bounty) string { return kvKey(b.ID.String() + "\n" + b.ResponseURL) }

// Deliverer returns the Deliverer workers need: it puts answers to
// ResultScheme response URLs into the results bucket for their submitter,
// hands any other to next, and after each delivered answer records an
// answered marker, so that a redelivery of the job (its worker died before
// acknowledging it) is acknowledged instead of answered twice.
//
// A nil next is psengine.HTTPDeliverer with a PublicOnly deliver.Client:
// an HTTP POST with retries that refuses response URLs on loopback,
// private and link-local addresses, as WorkerOptions does by default. To
// POST anywhere, pass psengine.HTTPDeliverer(&deliver.Client{}).
func (b *Broker) Deliverer(next psengine.Deliverer) psengine.Deliverer {
	if next == nil {
		next = b.httpDeliverer(false)
	}
	return psengine.DelivererFunc(func(ctx context.Context, bounty psengine.Bounty, answer psengine.Answer) error {
		var err error
		if key, ok := resultKey(bounty.ResponseURL); ok {
			err = b.putResult(ctx, key, record{Answer: &answer})
		} else {
			err = next.Deliver(ctx, bounty, answer)
		}
		if err != nil {
			return err
		}
		b.markAnswered(ctx, bounty)
		return nil
	})
}

func (b *Broker) putResult(ctx context.Context, key string, r record) error {
	kv, err := b.resultsKV(ctx)
	if err != nil {
		return err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return psengine.Permanent(fmt.Errorf("natsq: encode result: %w", err))
	}
	if _, err := kv.Put(ctx, key, data); err != nil {
		return fmt.Errorf("natsq: put result %s: %w", key, err)
	}
	return nil
}

// markAnswered records that bounty's answer was delivered. A failure is
// only logged: the answer is out, and failing would redeliver the job.
func (b *Broker) markAnswered(ctx context.Context, bounty psengine.Bounty) {
	kv, err := b.answeredKV(ctx)
	if err == nil {
		_, err = kv.Put(context.WithoutCancel(ctx), markerKey(bounty), []byte(time.Now().UTC().Format(time.RFC3339Nano)))
	}
	if err != nil {
		b.log.Warn("recording an answer failed; a redelivery of this bounty would answer it again",
			"bounty", bounty.ID.String(), "err", err)
	}
}

// wasAnswered tells whether bounty's answer was already delivered. Bounties
// without a response URL deliver nothing and are never skipped.
func (b *Broker) wasAnswered(ctx context.Context, bounty psengine.Bounty) bool {
	if bounty.ResponseURL == "" {
		return false
	}
	kv, err := b.answeredKV(ctx)
	if err == nil {
		_, err = kv.Get(ctx, markerKey(bounty))
		if err == nil {
			return true
		}
	}
	if !errors.Is(err, jetstream.ErrKeyNotFound) {
		b.log.Warn("checking for an earlier answer failed; answering", "bounty", bounty.ID.String(), "err", err)
	}
	return false
}

// reportToSubmitter writes why a bounty gets no answer, when its submitter
// waits for one. It never replaces an answer.
func (b *Broker) reportToSubmitter(ctx context.Context, bounty psengine.Bounty, kind, msg string) {
	key, ok := resultKey(bounty.ResponseURL)
	if !ok {
		return
	}
	kv, err := b.resultsKV(ctx)
	if err == nil {
		data, _ := json.Marshal(record{Kind: kind, Error: msg})
		_, err = kv.Create(ctx, key, data)
	}
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		b.log.Warn("telling the submitter failed", "bounty", bounty.ID.String(), "err", err)
	}
}

// reportUnanswered is an engine error hook: bounties the engine drops
// without an answer (expired, malformed) are reported to their submitter.
func (b *Broker) reportUnanswered(ctx context.Context, res psengine.Result) {
	bounty, err := res.Bounty, res.Err
	switch {
	case errors.Is(err, psengine.ErrExpired):
		b.reportToSubmitter(ctx, bounty, kindExpired, oneLine(err))
	case errors.Is(err, psengine.ErrMalformedBounty):
		b.reportToSubmitter(ctx, bounty, kindMalformed, oneLine(err))
	}
}

// WorkerOptions are the engine options of a worker serving this broker,
// besides psengine.WithBroker(b): the Deliverer (results for submitters,
// HTTP otherwise, answered markers), a fetch policy that reads staged
// artifacts (fetch.Remote plus ArtifactScheme), and an error hook telling
// submitters about bounties dropped unanswered.
//
// Bounties come from the network, so by default the fetch policy is
// PublicOnly: an http or https artifact on a loopback, private, shared or
// link-local address (fetch.PublicAddress) is not fetched and the bounty
// is answered unknown with SKIPPED:CANNOT-FETCH, its metadata.error naming
// the address. Staged artifacts are read from the object store, not over
// HTTP, and are not affected. Likewise an answer whose response URL is on
// such an address is not POSTed (deliver.Client.PublicOnly): the delivery
// fails at once, for good (deliver.ErrNotPublic, psengine.ErrPermanent),
// is reported to the engine's error hooks and the job is acknowledged.
// Answers to submitters (ResultScheme) go through the results bucket and
// are not affected. AllowPrivate lifts both restrictions.
func (b *Broker) WorkerOptions(opts ...WorkerOption) []psengine.Option {
	var c workerConfig
	for _, o := range opts {
		o.applyWorker(&c)
	}
	policy := fetch.Remote()
	policy.PublicOnly = !c.allowPrivate
	return []psengine.Option{
		psengine.WithDeliverer(b.Deliverer(b.httpDeliverer(c.allowPrivate))),
		psengine.WithFetchPolicy(b.FetchPolicy(policy)),
		psengine.OnError(b.reportUnanswered),
	}
}

// A WorkerOption changes what WorkerOptions gives a worker.
type WorkerOption interface{ applyWorker(*workerConfig) }

type workerConfig struct{ allowPrivate bool }

type workerOption func(*workerConfig)

func (o workerOption) applyWorker(c *workerConfig) { o(c) }

// AllowPrivate lets a worker fetch http and https artifacts from, and
// POST answers to, any address, loopback, private and link-local ones
// (cloud metadata services) included. It is for development, with a test
// artifact server or response URL on the same machine or network: in
// production a bounty could make the worker reach into its own network.
func AllowPrivate() WorkerOption {
	return workerOption(func(c *workerConfig) { c.allowPrivate = true })
}

// httpDeliverer POSTs answers to their response URL, on public addresses
// only unless allowPrivate.
func (b *Broker) httpDeliverer(allowPrivate bool) psengine.Deliverer {
	return psengine.HTTPDeliverer(&deliver.Client{Logger: b.log, PublicOnly: !allowPrivate})
}

// Request is one bounty for Analyze.
type Request struct {
	Bounty psengine.Bounty
	// Content, when not nil, is the artifact's bytes as read on this
	// machine: Analyze stages them in the object store and the worker reads
	// them from there (the bounty's URI is replaced). Leave it nil for
	// URIs every worker can read (http, https, data:). The caller closes
	// it once Analyze is done.
	Content *fetch.Content
}

// Analyze submits one job per request and yields one Result per request,
// in request order, each as soon as it and those before it are answered:
// the analyze flow of a host whose workers run elsewhere. Each bounty's
// answer comes back through the results bucket (its response URL is set to
// a ResultScheme key, so workers need WorkerOptions), and is removed from
// it once read.
//
// It waits until ctx ends or, at the latest, ResultGrace past the latest
// expiration of the bounties. A request not answered by then, or that
// could not be submitted, is yielded with Answered false and Err set
// (ErrNoAnswer, ErrDeadLettered, psengine.ErrExpired, a submit error).
// Results carry the request's Bounty as given. Stopping the iteration
// early abandons the wait (jobs already queued are still answered).
func (b *Broker) Analyze(ctx context.Context, reqs []Request) iter.Seq[psengine.Result] {
	return func(yield func(psengine.Result) bool) {
		results := make([]psengine.Result, len(reqs))
		done := make([]bool, len(reqs))
		for i, r := range reqs {
			results[i].Bounty = r.Bounty
		}
		next := 0
		emit := func() bool {
			for ; next < len(reqs) && done[next]; next++ {
				if !yield(results[next]) {
					return false
				}
			}
			return true
		}
		failAll := func(err error) {
			for i := range results {
				if !done[i] {
					results[i].Err, done[i] = err, true
				}
			}
			emit()
		}

		kv, err := b.resultsKV(ctx)
		if err != nil {
			failAll(err)
			return
		}
		run := nuid.Next()
		// Watch before submitting, so no answer can be missed. The watch
		// has a context of its own: the end of the caller's is seen below.
		watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
		defer stopWatch()
		w, err := kv.Watch(watchCtx, run+".>", jetstream.IgnoreDeletes())
		if err != nil {
			failAll(fmt.Errorf("natsq: watch results: %w", err))
			return
		}
		defer func() { _ = w.Stop() }()

		var latest time.Time
		pending := 0
		for i, r := range reqs {
			if err := b.submitForResult(ctx, run+"."+strconv.Itoa(i), r); err != nil {
				results[i].Err, done[i] = err, true
				continue
			}
			pending++
			if r.Bounty.Expiration.After(latest) {
				latest = r.Bounty.Expiration
			}
		}
		wctx := ctx
		if !latest.IsZero() {
			var cancel context.CancelFunc
			wctx, cancel = context.WithDeadlineCause(ctx, latest.Add(b.cfg.ResultGrace),
				fmt.Errorf("%w: %s after the last bounty expired", ErrNoAnswer, b.cfg.ResultGrace))
			defer cancel()
		}
		if !emit() {
			return
		}
		for pending > 0 {
			select {
			case <-wctx.Done():
				cause := context.Cause(wctx)
				if !errors.Is(cause, ErrNoAnswer) {
					cause = fmt.Errorf("%w: %w", ErrNoAnswer, cause)
				}
				failAll(cause)
				return
			case e, ok := <-w.Updates():
				if !ok {
					failAll(fmt.Errorf("%w: the results watch ended", ErrNoAnswer))
					return
				}
				if e == nil {
					continue // the end of the values present at the start
				}
				i, err := strconv.Atoi(strings.TrimPrefix(e.Key(), run+"."))
				if err != nil || i < 0 || i >= len(reqs) || done[i] {
					continue
				}
				var rec record
				if err := json.Unmarshal(e.Value(), &rec); err != nil {
					results[i].Err = fmt.Errorf("%w: unreadable result: %w", ErrNoAnswer, err)
				} else if rec.Answer != nil {
					results[i].Analysis, results[i].Answered, results[i].Delivered = rec.Answer.Analysis, true, true
				} else {
					results[i].Err = rec.err()
				}
				done[i] = true
				pending--
				if err := kv.Purge(context.WithoutCancel(ctx), e.Key()); err != nil {
					b.log.Debug("removing a read result failed; ResultTTL will", "key", e.Key(), "err", err)
				}
				if !emit() {
					return
				}
			}
		}
	}
}

// submitForResult stages the request's content, points its answer at the
// result key and submits it. The job ID is the bounty id and the key, so
// the same artifact analyzed twice, or by two submitters, is two jobs.
func (b *Broker) submitForResult(ctx context.Context, key string, r Request) error {
	bounty := r.Bounty
	if r.Content != nil {
		rc, err := r.Content.Open()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrArtifact, err)
		}
		uri, err := b.StageArtifact(ctx, key, rc)
		_ = rc.Close()
		if err != nil {
			return err
		}
		bounty.ArtifactURI = uri
	}
	bounty.ResponseURL = ResultScheme + ":" + key
	// The job is made here, once: validated, windowed, keyed, accepted now.
	job, err := broker.NewJob(bounty.ID.String()+"@"+key, bounty, time.Now(), psengine.DefaultLocalTTL)
	if err == nil {
		err = b.Submit(ctx, job)
	}
	if err != nil && r.Content != nil {
		b.removeArtifact(bounty.ArtifactURI) // no worker will
	}
	return err
}
