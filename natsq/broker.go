package natsq

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/pipeline"
)

// Headers a dead-lettered message adds to the job's (its body is the
// bounty as queued; its Natsq-Job-Id names the job).
const (
	HeaderJobID      = "Natsq-Job-Id"
	HeaderReason     = "Natsq-Reason"
	HeaderDeliveries = "Natsq-Deliveries"
	HeaderAttempts   = "Natsq-Attempts"
	HeaderPermanent  = "Natsq-Permanent"
)

// Broker is a broker.Broker on NATS JetStream, shared by any number of
// processes on any number of machines. Jobs are messages on a work-queue
// stream, deduplicated by job ID and by content key; the consumers of one
// process pull them together from a shared durable consumer and
// acknowledge each only after its handler returned nil (for an Engine:
// after the answer was delivered). It is also a broker.AnswerKeeper, a
// broker.ScanMarker and a broker.DeadLetterStore. See the package
// documentation for the guarantees.
//
// The host owns the *nats.Conn (authentication, TLS, reconnects) and closes
// it after the broker is done (Close, then Drain). A Broker is safe for
// concurrent use.
type Broker struct {
	nc        *nats.Conn
	apiPrefix string // of JetStream API subjects
	js        jetstream.JetStream
	cfg       Config
	names     names
	log       *slog.Logger

	closing context.Context // done once Close was called
	close   context.CancelFunc

	mu        sync.Mutex // guards the handles, bound on first use, and the feeder
	consumer  jetstream.Consumer
	results   jetstream.KeyValue
	answered  jetstream.KeyValue
	keys      jetstream.KeyValue // content keys of submitted bounties
	state     jetstream.KeyValue // job records and scan marks (state.go)
	artifacts jetstream.ObjectStore
	feed      *feeder

	handling sync.Map // job ID -> *held: jobs the consumers of this process handle
	marks    *scanMarks
	view     markView

	heldMu   sync.Mutex
	heldN    int           // deliveries this process holds (arrived, not settled)
	idle     chan struct{} // closed while heldN is 0
	unmarked bool          // the scan marks were removed after Close
}

var (
	_ broker.Broker          = (*Broker)(nil)
	_ broker.AnswerKeeper    = (*Broker)(nil)
	_ broker.ScanMarker      = (*Broker)(nil)
	_ broker.DeadLetterStore = (*Broker)(nil)
)

// New returns a broker using nc with cfg. It does not contact the server:
// call Provision once (it is idempotent) before the first Submit or Consume.
// It fails only for a nil connection or a bad Config (ErrBadConfig).
func New(nc *nats.Conn, cfg Config) (*Broker, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: nil *nats.Conn", ErrBadConfig)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsq: %w", err)
	}
	b := &Broker{nc: nc, js: js, apiPrefix: js.Options().APIPrefix, cfg: cfg, names: namesFor(cfg.Prefix), log: cfg.Logger}
	if b.apiPrefix == "" {
		b.apiPrefix = "$JS.API."
	} else if !strings.HasSuffix(b.apiPrefix, ".") {
		b.apiPrefix += "."
	}
	b.closing, b.close = context.WithCancel(context.Background())
	b.marks = newScanMarks(nuid.Next())
	b.idle = make(chan struct{})
	close(b.idle)
	return b, nil
}

// Config returns the broker's configuration with its defaults filled in.
func (b *Broker) Config() Config { return b.cfg }

// Provision creates, or updates to match the broker's Config, everything
// the queue needs on the server: the job and dead-letter streams, the
// workers' durable consumer, the artifact object store and the result and
// answered-marker buckets. It is idempotent and safe to run from several
// processes at once; it retries briefly when they race.
func (b *Broker) Provision(ctx context.Context) error {
	_, err := pipeline.Retry(pipeline.Backoff{MaxAttempts: 3}, func(ctx context.Context, _ struct{}) (struct{}, error) {
		return struct{}{}, b.provision(ctx)
	})(ctx, struct{}{})
	return err
}

func (b *Broker) provision(ctx context.Context) error {
	c, n := b.cfg, b.names
	js := b.js
	for _, sc := range []jetstream.StreamConfig{{
		Name:        n.jobs,
		Description: "psengine bounties waiting for a worker",
		Subjects:    []string{n.jobSubject},
		Retention:   jetstream.WorkQueuePolicy,
		Discard:     jetstream.DiscardNew,
		MaxMsgs:     c.Capacity,
		Duplicates:  c.Duplicates,
		Storage:     c.Storage,
		Replicas:    c.Replicas,
	}, {
		Name:        n.dead,
		Description: "psengine bounties given up on, with the reason in headers",
		Subjects:    []string{n.deadSubject, n.deadSubject + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  c.Duplicates,
		Storage:     c.Storage,
		Replicas:    c.Replicas,
	}} {
		if _, err := createOrUpdate(ctx, js.CreateStream, js.UpdateStream, sc); err != nil {
			return fmt.Errorf("natsq: provision stream %s: %w", sc.Name, err)
		}
	}
	cons, err := b.js.CreateOrUpdateConsumer(ctx, n.jobs, jetstream.ConsumerConfig{
		Durable:       n.consumer,
		Description:   "psengine workers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    -1, // the limit is ours (MaxAttempts), so nothing stays stuck
		MaxAckPending: 10000,
		FilterSubject: n.jobSubject,
		Replicas:      c.Replicas,
	})
	if err != nil {
		return fmt.Errorf("natsq: provision consumer %s: %w", n.consumer, err)
	}
	var results, answered, keys, state jetstream.KeyValue
	for _, kv := range []struct {
		to                *jetstream.KeyValue
		bucket, what      string
		ttl, markerExpiry time.Duration
	}{
		{&results, n.results, "answers waiting for their submitter", c.ResultTTL, 0},
		{&answered, n.answered, "bounties answered (so a redelivery is not answered twice)", c.ResultTTL, 0},
		{&keys, n.keys, "bounties submitted, by content (the same bounty under another job ID is dropped)", c.KeyTTL, 0},
		// The markers of records removed expire (nats-server 2.11+); an
		// older server keeps them for TTL.
		{&state, n.state, "job records (attempts, suspicion, kept answers) and the scans of each worker", c.KeyTTL, purgeMarkerTTL},
	} {
		cfg := jetstream.KeyValueConfig{Bucket: kv.bucket, Description: "psengine " + kv.what, TTL: kv.ttl,
			Storage: c.Storage, Replicas: c.Replicas, LimitMarkerTTL: kv.markerExpiry}
		*kv.to, err = createOrUpdate(ctx, js.CreateKeyValue, js.UpdateKeyValue, cfg)
		if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
			cfg.LimitMarkerTTL = 0
			*kv.to, err = createOrUpdate(ctx, js.CreateKeyValue, js.UpdateKeyValue, cfg)
		}
		if err != nil {
			return fmt.Errorf("natsq: provision bucket %s: %w", kv.bucket, err)
		}
	}
	artifacts, err := createOrUpdate(ctx, js.CreateObjectStore, js.UpdateObjectStore, jetstream.ObjectStoreConfig{
		Bucket:      n.artifacts,
		Description: "psengine artifacts staged by submitters for remote workers",
		TTL:         c.ArtifactTTL,
		Storage:     c.Storage,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return fmt.Errorf("natsq: provision object store %s: %w", n.artifacts, err)
	}
	b.mu.Lock()
	b.consumer, b.results, b.answered, b.keys, b.state, b.artifacts = cons, results, answered, keys, state, artifacts
	b.mu.Unlock()
	return nil
}

// createOrUpdate creates a stream or bucket, and updates it only when one
// of that name exists with another configuration. jetstream's
// CreateOrUpdate forms send an update every time, and an update rewrites
// the stream's stored configuration, which nats-server (2.15.3) reads
// without its lock while another process creates a consumer: workers and
// submitters starting together made the race detector report it.
func createOrUpdate[C, T any](ctx context.Context, create, update func(context.Context, C) (T, error), cfg C) (T, error) {
	v, err := create(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || errors.Is(err, jetstream.ErrBucketExists) {
		return update(ctx, cfg)
	}
	return v, err
}

// notProvisioned turns a missing stream, consumer or bucket into
// ErrNotProvisioned.
func notProvisioned(what string, err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("%w: %s: %w", ErrNotProvisioned, what, err)
	}
	return fmt.Errorf("natsq: %s: %w", what, err)
}

func (b *Broker) consumerHandle(ctx context.Context) (jetstream.Consumer, error) {
	return bind(b, &b.consumer, "consumer "+b.names.consumer, func() (jetstream.Consumer, error) {
		return b.js.Consumer(ctx, b.names.jobs, b.names.consumer)
	})
}

func (b *Broker) kv(ctx context.Context, which *jetstream.KeyValue, bucket string) (jetstream.KeyValue, error) {
	return bind(b, which, "bucket "+bucket, func() (jetstream.KeyValue, error) {
		return b.js.KeyValue(ctx, bucket)
	})
}

func (b *Broker) resultsKV(ctx context.Context) (jetstream.KeyValue, error) {
	return b.kv(ctx, &b.results, b.names.results)
}

func (b *Broker) answeredKV(ctx context.Context) (jetstream.KeyValue, error) {
	return b.kv(ctx, &b.answered, b.names.answered)
}

func (b *Broker) keysKV(ctx context.Context) (jetstream.KeyValue, error) {
	return b.kv(ctx, &b.keys, b.names.keys)
}

func (b *Broker) stateKV(ctx context.Context) (jetstream.KeyValue, error) {
	return b.kv(ctx, &b.state, b.names.state)
}

func (b *Broker) artifactStore(ctx context.Context) (jetstream.ObjectStore, error) {
	return bind(b, &b.artifacts, "object store "+b.names.artifacts, func() (jetstream.ObjectStore, error) {
		return b.js.ObjectStore(ctx, b.names.artifacts)
	})
}

// bind returns the handle *to, looked up with get on first use (under b.mu).
func bind[T comparable](b *Broker, to *T, what string, get func() (T, error)) (T, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var none T
	if *to == none {
		v, err := get()
		if err != nil {
			return none, notProvisioned(what, err)
		}
		*to = v
	}
	return *to, nil
}

// Submit publishes job and returns once the server stored it (the publish
// acknowledgement), or ctx ends. The job is taken as it comes (made by
// broker.NewJob: validated, windowed, keyed); an empty ID is the
// bounty's id. Submit returns an error wrapping psengine.ErrDuplicate for a
// job whose ID the server saw within Config.Duplicates, or whose Key (the
// bounty's content: broker.BountyKey) another job took within
// Config.KeyTTL; psengine.ErrQueueFull beyond Capacity; psengine.ErrClosed
// after Close; ErrNotProvisioned when the stream is missing; and an error
// wrapping psengine.ErrMalformedBounty for a job that cannot travel as a
// message (an ID with a line break, a bounty over 1 MiB).
func (b *Broker) Submit(ctx context.Context, job broker.Job) error {
	if b.closing.Err() != nil {
		return psengine.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	job.ID = cmp.Or(job.ID, job.Bounty.ID.String())
	job.Answer = nil // answers are kept by KeepAnswer only
	h, body, err := encodeJob(job)
	if err != nil {
		return err
	}
	forgetKey := func() {}
	if job.Key != "" {
		if forgetKey, err = b.takeKey(ctx, job); err != nil {
			return err
		}
	}
	ack, err := b.js.PublishMsg(ctx, &nats.Msg{Subject: b.names.jobSubject, Data: body, Header: h})
	switch {
	case err != nil:
		forgetKey()
		return b.publishError(job.ID, err)
	case ack.Duplicate:
		forgetKey()
		return fmt.Errorf("%w: job %s", psengine.ErrDuplicate, job.ID)
	}
	return nil
}

// takeKey records that job took its Key, or returns an error wrapping
// psengine.ErrDuplicate when another job has it. A key already taken by
// this very job (a Submit retried after the key was recorded) is not a
// duplicate: the publish decides. forget gives back a key this call took,
// should the job not be queued after all.
func (b *Broker) takeKey(ctx context.Context, job broker.Job) (forget func(), err error) {
	keys, err := b.keysKV(ctx)
	if err != nil {
		return nil, err
	}
	k := kvKey(job.Key)
	_, err = keys.Create(ctx, k, []byte(job.ID))
	if err == nil {
		return func() { _ = keys.Delete(context.WithoutCancel(ctx), k) }, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("natsq: submit %s: recording its key: %w", job.ID, err)
	}
	e, gerr := keys.Get(ctx, k)
	if gerr == nil && string(e.Value()) == job.ID {
		return func() {}, nil
	}
	return nil, fmt.Errorf("%w: bounty %s (job %s)", psengine.ErrDuplicate, job.Key, job.ID)
}

func (b *Broker) publishError(id string, err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		d := apiErr.Description
		if strings.Contains(d, "maximum messages") || strings.Contains(d, "maximum bytes") {
			return fmt.Errorf("%w: job %s: %w", psengine.ErrQueueFull, id, err)
		}
	}
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		return fmt.Errorf("%w: job %s: no stream answers on %s: %w", ErrNotProvisioned, id, b.names.jobSubject, err)
	}
	return fmt.Errorf("natsq: submit %s: %w", id, err)
}

// Close stops this Broker (not the queue, which other processes share):
// Submit answers psengine.ErrClosed, this process takes no new job, and
// each Consume returns nil once its handler returned. Jobs that arrive for
// no consumer are handed back (no attempt counted) for other workers. It
// does not close the connection: call Drain first, so that nothing this
// process holds is left to AckWait. Close is idempotent.
func (b *Broker) Close() {
	b.close()
	b.mu.Lock()
	f := b.feed
	b.mu.Unlock()
	if f != nil {
		f.close()
	}
}

// Drain waits until this process holds no job of the queue's (none
// handled, none arrived for a consumer) and returns nil, or ctx ends first
// and it returns ctx's error. After Close it also waits for the inbox to
// drain (the jobs the server sent before it learnt that no consumer waits
// any more: they are handed back), and then removes this process's scan
// marks: call it before closing the connection.
func (b *Broker) Drain(ctx context.Context) error {
	for {
		b.heldMu.Lock()
		idle := b.idle
		b.heldMu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
		if b.closing.Err() == nil {
			return nil
		}
		b.mu.Lock()
		f := b.feed
		b.mu.Unlock()
		if f != nil {
			select {
			case <-f.quiet:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		b.heldMu.Lock()
		n := b.heldN
		done := n == 0 && !b.unmarked
		if done {
			b.unmarked = true
		}
		b.heldMu.Unlock()
		if n > 0 {
			continue // the last requests brought jobs: they are being handed back
		}
		if done {
			b.forgetMarks(ctx)
		}
		return nil
	}
}

// forgetMarks removes this process's scan marks once it holds nothing.
func (b *Broker) forgetMarks(ctx context.Context) {
	b.marks.mu.Lock()
	wrote := b.marks.wrote
	b.marks.mu.Unlock()
	if !wrote {
		return
	}
	if kv, err := b.stateKV(ctx); err == nil {
		if kv.Purge(ctx, b.marks.key, jetstream.PurgeTTL(purgeMarkerTTL)) != nil {
			_ = kv.Purge(ctx, b.marks.key)
		}
	}
}

// feeder returns the feeder of this process's consumers, made on first
// use (again after the connection closed); nil once the broker is closed.
func (b *Broker) feeder() (*feeder, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing.Err() != nil {
		return nil, nil
	}
	if b.feed != nil {
		b.feed.mu.Lock()
		gone := b.feed.gone
		b.feed.mu.Unlock()
		if gone == nil {
			return b.feed, nil
		}
	}
	f, err := b.newFeeder()
	if err != nil {
		return nil, err
	}
	b.feed = f
	return f, nil
}

// Consume calls h for each job this process's feeder hands it, one at a
// time, until ctx ends (then it returns ctx's error) or the broker is
// closed (then nil); it returns only after h returned and the job was
// settled, so h is never called after Consume returned. A consumer whose
// ctx is done takes no job. Several Consume calls, in one process or many,
// share the jobs; those of one process share one inbox and its pull
// requests (see pull.go), so an engine's WithInFlight consumers cost one
// request per batch of jobs, not one per job.
//
// Settling (see the package documentation): h returning nil acknowledges
// the job (and removes its staged artifact); an error while ctx is done
// hands it back, its attempt not counted; an error wrapping
// psengine.ErrPermanent dead-letters it; any other error has it delivered
// again after Backoff with Job.Attempt raised, and after MaxAttempts gives
// it a last call (Job.Final) after which it is dead-lettered whatever h
// returns. While h runs, the job is kept from other workers by heartbeats
// every Heartbeat. A job whose answer was already delivered (its worker
// died before acknowledging it, or the same bounty came again for the same
// response URL) is acknowledged without calling h.
//
// Connection trouble does not end Consume: the feeder asks again (the
// host's connection reconnects). It returns an error when the connection
// was closed for good, and ErrNotProvisioned at once when the consumer is
// missing.
func (b *Broker) Consume(ctx context.Context, h broker.Handler) error {
	if h == nil {
		return fmt.Errorf("%w: nil Handler", ErrBadConfig)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closing.Err() != nil {
		return nil
	}
	if _, err := b.consumerHandle(ctx); err != nil {
		return err
	}
	f, err := b.feeder()
	if f == nil {
		return err
	}
	f.join()
	defer f.leave()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		d, err := f.take(ctx)
		if d == nil {
			return err
		}
		b.handle(ctx, d, h)
	}
}

// hold counts a delivery this process holds and keeps it alive with
// heartbeats until release.
func (b *Broker) hold(d *delivery) {
	b.heldMu.Lock()
	if b.heldN == 0 {
		b.idle = make(chan struct{})
	}
	b.heldN++
	b.heldMu.Unlock()
	d.stopBeat = heartbeat(b.cfg.Heartbeat, d.InProgress)
}

// release ends the hold of a settled delivery.
func (b *Broker) release(d *delivery) {
	d.stopBeat()
	b.heldMu.Lock()
	b.heldN--
	if b.heldN == 0 {
		close(b.idle)
	}
	b.heldMu.Unlock()
}

// settleTimeout bounds each of the broker's own writes while settling.
const settleTimeout = 10 * time.Second

// opContext is the context of the broker's own writes for a job: they are
// made whatever became of ctx (our stop hands a job back by writing).
func opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
}

// handBackUnhandled hands back a delivery no consumer took (they stopped,
// or the broker was closed), its attempt not counted.
func (b *Broker) handBackUnhandled(d *delivery) {
	b.handle(context.Background(), d, nil)
}

// handle runs h on one delivered message and settles it (h nil: hands it
// back unhandled).
func (b *Broker) handle(ctx context.Context, d *delivery, h broker.Handler) {
	defer b.release(d)
	job, err := decodeJob(d.Headers(), d.Data())
	if err != nil {
		job.ID = cmp.Or(d.Headers().Get(HeaderJobID), d.Headers().Get(jetstream.MsgIDHeader))
		wctx, cancel := opContext(ctx)
		defer cancel()
		b.deadLetter(wctx, &held{d: d, job: job}, &DeadLetterError{Reason: oneLine(err), Deliveries: d.delivered, Permanent: true})
		return
	}
	hd := &held{d: d, job: job}
	hd.st.ID = job.ID
	if !b.prepare(ctx, hd, h == nil) {
		return
	}
	if h == nil {
		wctx, cancel := opContext(ctx)
		defer cancel()
		b.handBack(wctx, hd, "no consumer took it")
		return
	}
	job = hd.job
	b.handling.Store(job.ID, hd)
	var herr error
	if perr := pipeline.Protect(func() { herr = h(ctx, job) }); perr != nil {
		herr = perr
	}
	b.handling.CompareAndDelete(job.ID, hd)
	b.marks.remove(d.seq)

	hd.mu.Lock()
	defer hd.mu.Unlock()
	wctx, cancel := opContext(ctx)
	defer cancel()
	stopped := ctx.Err() != nil
	log := b.jobLog(hd)
	switch {
	case herr != nil && stopped && !errors.Is(herr, psengine.ErrPermanent):
		b.handBack(wctx, hd, oneLine(herr))
	case job.Final != "":
		b.deadLetter(wctx, hd, &DeadLetterError{Reason: job.Final, Deliveries: d.delivered, Attempts: job.Attempt})
	case herr == nil:
		b.ack(wctx, hd)
	case errors.Is(herr, psengine.ErrPermanent):
		b.deadLetter(wctx, hd, &DeadLetterError{Reason: oneLine(herr), Deliveries: d.delivered, Attempts: job.Attempt, Permanent: true})
	case job.Attempt >= b.cfg.MaxAttempts:
		hd.st.Final = fmt.Sprintf("gave up after %d attempts: %s", job.Attempt, oneLine(herr))
		hd.st.Explained, hd.dirty = d.delivered, true
		if err := b.saveState(wctx, hd); err != nil {
			log.Warn("recording the job's last call failed", "err", err)
		}
		log.Warn("job failed its last attempt: one last call, then it is dead-lettered", "err", herr, "attempts", job.Attempt)
		if err := d.Nak(); err != nil {
			log.Warn("asking for the last call failed; it comes after AckWait", "err", err)
		}
	default:
		hd.st.Attempt, hd.st.Explained, hd.dirty = job.Attempt+1, d.delivered, true
		if err := b.saveState(wctx, hd); err != nil {
			log.Warn("recording the job's failure failed", "err", err)
		}
		delay := b.cfg.Backoff.Delay(job.Attempt)
		log.Info("job failed; delivering it again later", "err", herr, "attempt", job.Attempt, "delay", delay)
		if err := d.NakWithDelay(delay); err != nil {
			log.Warn("asking for a redelivery failed; it returns after AckWait", "err", err)
		}
	}
}

// jobLog is a logger of hd's job and delivery.
func (b *Broker) jobLog(hd *held) *slog.Logger {
	return b.log.With("job", hd.job.ID, "delivery", hd.d.delivered)
}

// prepare reads and judges the record of hd's message and makes the job
// its handler gets. It returns false when the delivery was settled here:
// answered already (acknowledged), or its record unreadable (delivered
// again later).
func (b *Broker) prepare(ctx context.Context, hd *held, handBack bool) bool {
	wctx, cancel := opContext(ctx)
	defer cancel()
	d, job := hd.d, hd.job
	log := b.jobLog(hd)
	if d.delivered > 1 {
		if err := b.loadState(wctx, hd); err != nil {
			log.Warn("reading the job's record failed; it is delivered again later", "err", err)
			_ = d.NakWithDelay(b.cfg.Backoff.Delay(1))
			return false
		}
	}
	// A redelivery may follow a worker that died between answer and ack;
	// an answer POSTed elsewhere may come from the same bounty submitted
	// again under another job ID. Result keys are unique per submission:
	// only redeliveries can repeat them.
	_, toSubmitter := resultKey(job.Bounty.ResponseURL)
	if (d.delivered > 1 || !toSubmitter) && b.wasAnswered(wctx, job.Bounty) {
		log.Info("job was already answered: acknowledging it without a second answer")
		b.ack(wctx, hd)
		return false
	}
	b.judge(wctx, hd)
	if handBack {
		return true // recorded with the hand-back
	}
	if err := b.saveState(wctx, hd); err != nil {
		log.Warn("recording the job's lapsed deliveries failed", "err", err)
	}
	st := hd.st
	job.Attempt, job.Final, job.Suspect = max(st.Attempt, 1), st.Final, st.Suspect && st.Final == ""
	if st.Answer != nil {
		a := *st.Answer
		job.Answer = &a
	}
	hd.job = job
	return true
}

// handBack returns a job cut short by our own stop (or never handed to a
// handler) to the queue at once, recording the delivery so that it counts
// neither an attempt nor a death.
func (b *Broker) handBack(ctx context.Context, hd *held, why string) {
	hd.st.Explained, hd.dirty = hd.d.delivered, true
	log := b.jobLog(hd)
	if err := b.saveState(ctx, hd); err != nil {
		log.Warn("recording a hand-back failed: its next delivery counts it as a lapse (its worker gone)", "err", err)
	}
	log.Info("job handed back", "why", why)
	if err := hd.d.Nak(); err != nil {
		log.Warn("handing the job back failed; it returns after AckWait", "err", err)
	}
}

// heartbeat calls beat every interval until stop is called; stop waits for
// a beat in progress. A timer rather than a goroutine: most jobs end
// before the first beat.
func heartbeat(every time.Duration, beat func() error) (stop func()) {
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(every, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		_ = beat() // a lost heartbeat only risks a redelivery
		t.Reset(every)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// ack acknowledges a handled job and removes its record and staged
// artifact.
func (b *Broker) ack(ctx context.Context, hd *held) {
	if err := hd.d.Ack(); err != nil {
		b.log.Warn("acknowledging a handled job failed; a redelivery will find it answered", "job", hd.job.ID, "err", err)
	}
	b.dropState(ctx, hd)
	b.removeArtifact(hd.job.Bounty.ArtifactURI)
}
