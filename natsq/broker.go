package natsq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/pipeline"
)

// Headers a dead-lettered message adds to the job's (its body is the
// bounty as queued).
const (
	HeaderJobID      = "Natsq-Job-Id"
	HeaderReason     = "Natsq-Reason"
	HeaderDeliveries = "Natsq-Deliveries"
	HeaderPermanent  = "Natsq-Permanent"
)

// Broker is a psengine.Broker on NATS JetStream, shared by any number of
// processes on any number of machines. Jobs are messages on a work-queue
// stream, deduplicated by job ID; workers pull them one at a time from a
// shared durable consumer and acknowledge each only after its handler
// returned nil (for an Engine: after the answer was delivered). See the
// package documentation for the guarantees.
//
// The host owns the *nats.Conn (authentication, TLS, reconnects) and closes
// it after the broker is done. A Broker is safe for concurrent use.
type Broker struct {
	nc        *nats.Conn
	apiPrefix string // of JetStream API subjects
	js        jetstream.JetStream
	cfg       Config
	names     names
	log       *slog.Logger

	closing context.Context // done once Close was called
	close   context.CancelFunc

	mu        sync.Mutex // guards the handles, bound on first use
	consumer  jetstream.Consumer
	results   jetstream.KeyValue
	answered  jetstream.KeyValue
	keys      jetstream.KeyValue // content keys of submitted bounties
	kept      jetstream.KeyValue // answers kept for redeliveries
	artifacts jetstream.ObjectStore

	handling sync.Map // job ID -> struct{}: jobs this process is handling
	keeping  sync.Map // job ID -> struct{}: jobs whose answer this process kept
}

var _ psengine.Broker = (*Broker)(nil)

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
	var err error
	for attempt := range 3 {
		if err = b.provision(ctx); err == nil || ctx.Err() != nil {
			return err
		}
		b.log.Debug("provision failed, retrying", "attempt", attempt+1, "err", err)
		t := time.NewTimer(time.Duration(attempt+1) * 100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
	return err
}

func (b *Broker) provision(ctx context.Context) error {
	c, n := b.cfg, b.names
	_, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        n.jobs,
		Description: "psengine bounties waiting for a worker",
		Subjects:    []string{n.jobSubject},
		Retention:   jetstream.WorkQueuePolicy,
		Discard:     jetstream.DiscardNew,
		MaxMsgs:     c.Capacity,
		Duplicates:  c.Duplicates,
		Storage:     c.Storage,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return fmt.Errorf("natsq: provision stream %s: %w", n.jobs, err)
	}
	_, err = b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        n.dead,
		Description: "psengine bounties given up on, with the reason in headers",
		Subjects:    []string{n.deadSubject},
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  c.Duplicates,
		Storage:     c.Storage,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return fmt.Errorf("natsq: provision stream %s: %w", n.dead, err)
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
	results, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      n.results,
		Description: "psengine answers waiting for their submitter",
		TTL:         c.ResultTTL,
		Storage:     c.Storage,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return fmt.Errorf("natsq: provision bucket %s: %w", n.results, err)
	}
	answered, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      n.answered,
		Description: "psengine bounties answered (so a redelivery is not answered twice)",
		TTL:         c.ResultTTL,
		Storage:     c.Storage,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return fmt.Errorf("natsq: provision bucket %s: %w", n.answered, err)
	}
	keys, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      n.keys,
		Description: "psengine bounties submitted, by content (the same bounty under another job ID is dropped)",
		TTL:         c.KeyTTL,
		Storage:     c.Storage,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return fmt.Errorf("natsq: provision bucket %s: %w", n.keys, err)
	}
	kept, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      n.kept,
		Description: "psengine answers kept until delivered (a redelivery delivers them without a scan)",
		TTL:         c.KeyTTL,
		Storage:     c.Storage,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return fmt.Errorf("natsq: provision bucket %s: %w", n.kept, err)
	}
	artifacts, err := b.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
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
	b.consumer, b.results, b.answered, b.keys, b.kept, b.artifacts = cons, results, answered, keys, kept, artifacts
	b.mu.Unlock()
	return nil
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
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.consumer == nil {
		c, err := b.js.Consumer(ctx, b.names.jobs, b.names.consumer)
		if err != nil {
			return nil, notProvisioned("consumer "+b.names.consumer, err)
		}
		b.consumer = c
	}
	return b.consumer, nil
}

func (b *Broker) kv(ctx context.Context, which *jetstream.KeyValue, bucket string) (jetstream.KeyValue, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if *which == nil {
		kv, err := b.js.KeyValue(ctx, bucket)
		if err != nil {
			return nil, notProvisioned("bucket "+bucket, err)
		}
		*which = kv
	}
	return *which, nil
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

func (b *Broker) keptKV(ctx context.Context) (jetstream.KeyValue, error) {
	return b.kv(ctx, &b.kept, b.names.kept)
}

func (b *Broker) artifactStore(ctx context.Context) (jetstream.ObjectStore, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.artifacts == nil {
		o, err := b.js.ObjectStore(ctx, b.names.artifacts)
		if err != nil {
			return nil, notProvisioned("object store "+b.names.artifacts, err)
		}
		b.artifacts = o
	}
	return b.artifacts, nil
}

// Submit publishes job and returns once the server stored it (the publish
// acknowledgement), or ctx ends. The job ID (default: the bounty's id) is
// the message ID: the server drops a job whose ID it saw within the
// Duplicates window, and Submit returns nil for it. It returns an error
// wrapping psengine.ErrMalformedBounty for an invalid bounty,
// psengine.ErrQueueFull beyond Capacity, psengine.ErrClosed after Close, and
// ErrNotProvisioned when the stream is missing.
func (b *Broker) Submit(ctx context.Context, job psengine.Job) error {
	if b.closing.Err() != nil {
		return psengine.ErrClosed
	}
	if err := job.Bounty.Validate(); err != nil {
		return err
	}
	if job.ID == "" {
		job.ID = job.Bounty.ID.String()
	}
	if job.Key == "" {
		job.Key = psengine.BountyKey(job.Bounty)
	}
	h, body, err := encodeJob(job)
	if err != nil {
		return err
	}
	var keys jetstream.KeyValue
	if job.Key != "" {
		// The same bounty under another job ID (a replayed webhook body):
		// taken already, it is dropped, as a repeated ID is.
		if keys, err = b.keysKV(ctx); err != nil {
			return err
		}
		if _, err := keys.Create(ctx, kvKey(job.Key), []byte(job.ID)); errors.Is(err, jetstream.ErrKeyExists) {
			b.log.Debug("job with a bounty already taken dropped", "job", job.ID)
			return nil
		} else if err != nil {
			return fmt.Errorf("natsq: submit %s: recording its key: %w", job.ID, err)
		}
	}
	ack, err := b.js.PublishMsg(ctx, &nats.Msg{Subject: b.names.jobSubject, Data: body, Header: h})
	if err != nil {
		if keys != nil { // not taken after all: a retry must be
			_ = keys.Delete(context.WithoutCancel(ctx), kvKey(job.Key))
		}
		return b.publishError(job.ID, err)
	}
	if ack.Duplicate {
		b.log.Debug("duplicate job dropped", "job", job.ID)
	}
	return nil
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
// Submit answers psengine.ErrClosed, and each Consume returns nil once its
// current job is settled. Jobs not taken stay queued for other workers.
// It does not close the connection. Close is idempotent.
func (b *Broker) Close() { b.close() }

// Consume pulls jobs one at a time and calls h for each, until ctx ends
// (then it returns ctx's error) or the broker is closed (then nil); it
// returns only after h returned and the job was settled, so h is never
// called after Consume returned. Several Consume calls, in one process or
// many, share the jobs.
//
// Settling: h returning nil acknowledges the job (and removes its staged
// artifact); an error wrapping psengine.ErrPermanent, or any error on the
// MaxAttempts-th delivery, dead-letters it; an error after ctx ended hands
// it back at once for another worker; any other error has it delivered
// again after Backoff, with Job.Attempt raised. While h runs, the job is
// kept from other workers by heartbeats every Heartbeat. A job whose answer
// was already delivered (its worker died before acknowledging it, or the
// same bounty came again for the same response URL) is acknowledged
// without calling h.
//
// Connection trouble does not end Consume: it waits and pulls again (the
// host's connection reconnects). It returns an error when the connection
// was closed for good, and ErrNotProvisioned at once when the consumer is
// missing.
func (b *Broker) Consume(ctx context.Context, h psengine.Handler) error {
	if h == nil {
		return fmt.Errorf("%w: nil Handler", ErrBadConfig)
	}
	if _, err := b.consumerHandle(ctx); err != nil {
		return err
	}
	p, err := b.newPuller()
	if err != nil {
		return err
	}
	defer p.close()
	pullCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(b.closing, cancel)
	defer stop()
	retry := pipeline.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second}
	failures := 0
	var next *prefetched
	defer func() {
		if next != nil {
			next.handBack()
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if b.closing.Err() != nil {
			return nil
		}
		var d *delivery
		if next != nil {
			d, next = next.wait(), nil
		}
		if d == nil {
			var err error
			d, err = p.pull(pullCtx, pullWait, false)
			if err != nil {
				if pullCtx.Err() != nil {
					continue // the loop's head says why
				}
				if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubscription) {
					return fmt.Errorf("natsq: consume: the connection is closed: %w", err)
				}
				failures++
				b.log.Warn("pulling a job failed; retrying", "err", err, "failures", failures)
				wait(pullCtx, retry.Delay(failures))
				continue
			}
			failures = 0
			if d == nil {
				continue
			}
		}
		if pullCtx.Err() != nil {
			// Arrived as the consumer stopped: back to the queue at once.
			_ = d.Nak()
			continue
		}
		if !b.cfg.NoPrefetch && d.pending > 0 {
			next = prefetch(pullCtx, p)
		}
		b.handle(ctx, d, h, next)
	}
}

// wait sleeps for d or until ctx ends.
func wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// prefetched is the next job, asked for while the current one runs, when
// the server said jobs were waiting: only a job already waiting (no_wait),
// so a busy worker never takes work an idle worker's pending pull would
// get. It is kept alive by the current job's heartbeats until its turn.
type prefetched struct {
	done chan struct{}
	d    *delivery
}

func prefetch(ctx context.Context, p *puller) *prefetched {
	f := &prefetched{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		f.d, _ = p.pull(ctx, 0, true) // nothing: the next pull asks again
	}()
	return f
}

// arrived returns the prefetched job if it has arrived, without waiting.
func (f *prefetched) arrived() *delivery {
	select {
	case <-f.done:
		return f.d
	default:
		return nil
	}
}

func (f *prefetched) wait() *delivery {
	<-f.done
	return f.d
}

// handBack returns an unhandled prefetched job to the queue at once.
func (f *prefetched) handBack() {
	if d := f.wait(); d != nil {
		_ = d.Nak()
	}
}

// handle runs h on one delivered message and settles it. While h runs,
// heartbeats keep msg and the prefetched next job (if any) alive.
func (b *Broker) handle(ctx context.Context, msg *delivery, h psengine.Handler, next *prefetched) {
	attempt := msg.delivered
	job, err := decodeJob(msg.Headers(), msg.Data())
	if err != nil {
		job.ID = msg.Headers().Get(jetstream.MsgIDHeader)
		job.Attempt = attempt
		b.deadLetter(msg, job, &DeadLetterError{Reason: oneLine(err), Deliveries: attempt, Permanent: true})
		return
	}
	job.Attempt = attempt
	log := b.log.With("job", job.ID, "attempt", attempt)
	// A redelivery may follow a worker that died between answer and ack;
	// an answer POSTed elsewhere may come from the same bounty submitted
	// again under another job ID (a webhook delivery retried by its
	// sender). Result keys are unique per submission: only redeliveries
	// can repeat them.
	_, toSubmitter := resultKey(job.Bounty.ResponseURL)
	if (attempt > 1 || !toSubmitter) && b.wasAnswered(ctx, job.Bounty) {
		log.Info("job was already answered: acknowledging it without a second answer")
		b.ack(msg, job)
		return
	}
	if attempt > b.cfg.MaxAttempts {
		b.deadLetter(msg, job, &DeadLetterError{
			Reason:     fmt.Sprintf("no handler finished in %d deliveries (the workers stopped or lost the connection)", attempt-1),
			Deliveries: attempt - 1,
		})
		return
	}

	stopBeat := heartbeat(b.cfg.Heartbeat, func() error {
		if next != nil {
			if m := next.arrived(); m != nil {
				_ = m.InProgress()
			}
		}
		return msg.InProgress()
	})
	if attempt > 1 {
		job.Answer = b.keptAnswer(ctx, job.ID)
	}
	b.handling.Store(job.ID, struct{}{})
	var herr error
	if perr := pipeline.Protect(func() { herr = h(ctx, job) }); perr != nil {
		herr = perr
	}
	b.handling.Delete(job.ID)
	stopBeat()

	switch {
	case herr == nil:
		b.ack(msg, job)
	case errors.Is(herr, psengine.ErrPermanent):
		b.deadLetter(msg, job, &DeadLetterError{Reason: oneLine(herr), Deliveries: attempt, Permanent: true})
	case ctx.Err() != nil:
		log.Info("consumer stopped during the job: handing it back", "err", herr)
		if err := msg.Nak(); err != nil {
			log.Warn("handing the job back failed; it returns after AckWait", "err", err)
		}
	case attempt >= b.cfg.MaxAttempts:
		b.deadLetter(msg, job, &DeadLetterError{Reason: oneLine(herr), Deliveries: attempt})
	default:
		d := b.cfg.Backoff.Delay(attempt)
		log.Info("job failed; delivering it again later", "err", herr, "delay", d)
		if err := msg.NakWithDelay(d); err != nil {
			log.Warn("asking for a redelivery failed; it returns after AckWait", "err", err)
		}
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

// ack acknowledges a handled job and removes its staged artifact.
func (b *Broker) ack(msg *delivery, job psengine.Job) {
	if err := msg.Ack(); err != nil {
		b.log.Warn("acknowledging a handled job failed; a redelivery will find it answered", "job", job.ID, "err", err)
	}
	b.removeArtifact(job.Bounty.ArtifactURI)
	b.forgetAnswer(job.ID)
}

// deadLetter moves a job to the dead-letter stream with the reason, and
// tells its submitter when it waits for a result. If the dead-letter
// stream cannot take it, the job stays queued and comes back later.
func (b *Broker) deadLetter(msg *delivery, job psengine.Job, why *DeadLetterError) {
	log := b.log.With("job", job.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dm := &nats.Msg{Subject: b.names.deadSubject, Data: msg.Data(), Header: nats.Header{}}
	for _, k := range []string{HeaderVersion, HeaderReply} {
		if v := msg.Headers().Get(k); v != "" {
			dm.Header.Set(k, v)
		}
	}
	dm.Header.Set(HeaderJobID, job.ID)
	dm.Header.Set(HeaderReason, truncate(why.Reason, 2048))
	dm.Header.Set(HeaderDeliveries, strconv.Itoa(why.Deliveries))
	dm.Header.Set(HeaderPermanent, strconv.FormatBool(why.Permanent))
	seq := msg.seq
	// One dead letter per queued message, even if this worker dies before
	// removing it from the job stream and another one gives up on it again.
	dm.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s#%d", job.ID, seq))
	if _, err := b.js.PublishMsg(ctx, dm); err != nil {
		log.Error("dead-lettering failed; the job stays queued", "err", err, "reason", why.Reason)
		_ = msg.NakWithDelay(b.cfg.Backoff.Delay(job.Attempt))
		return
	}
	if err := msg.Term(); err != nil {
		log.Warn("removing a dead-lettered job failed; it may be dead-lettered again (deduplicated)", "err", err)
	}
	b.forgetAnswer(job.ID)
	log.Warn("job dead-lettered", "reason", why.Reason, "deliveries", why.Deliveries, "permanent", why.Permanent)
	b.reportToSubmitter(ctx, job.Bounty, kindDead, why.Error())
	if b.cfg.OnDeadLetter != nil {
		dl := DeadLetter{Job: job, Err: why}
		if err := pipeline.Protect(func() { b.cfg.OnDeadLetter(dl) }); err != nil {
			log.Error("OnDeadLetter panicked", "err", err)
		}
	}
}

// DeadLetters returns the jobs in the dead-letter stream, oldest first, each
// with a *DeadLetterError as its Err and the number of deliveries it had as
// its Attempt. A message that is not a readable job comes back with only
// its ID.
func (b *Broker) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	st, err := b.js.Stream(ctx, b.names.dead)
	if err != nil {
		return nil, notProvisioned("stream "+b.names.dead, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("natsq: dead letters: %w", err)
	}
	var out []DeadLetter
	if info.State.Msgs == 0 {
		return out, nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		raw, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("natsq: dead letter %d: %w", seq, err)
		}
		out = append(out, parseDeadLetter(raw.Header, raw.Data))
	}
	return out, nil
}

func parseDeadLetter(h nats.Header, data []byte) DeadLetter {
	why := &DeadLetterError{Reason: h.Get(HeaderReason)}
	why.Deliveries, _ = strconv.Atoi(h.Get(HeaderDeliveries))
	why.Permanent, _ = strconv.ParseBool(h.Get(HeaderPermanent))
	jh := nats.Header{}
	for _, k := range []string{HeaderVersion, HeaderReply} {
		if v := h.Get(k); v != "" {
			jh.Set(k, v)
		}
	}
	jh.Set(jetstream.MsgIDHeader, h.Get(HeaderJobID))
	job, err := decodeJob(jh, data)
	if err != nil {
		job = psengine.Job{ID: h.Get(HeaderJobID)}
	}
	job.Attempt = why.Deliveries
	return DeadLetter{Job: job, Err: why}
}

// oneLine flattens an error message to one line, as headers need.
func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
