// Package broker is the contract between the engine and the queues that
// carry its bounties, as database/sql/driver is between database/sql and
// its drivers: a Job (a bounty with its delivery's state), the Broker
// interface and its optional ones (AnswerKeeper, ScanMarker,
// DeadLetterStore), and Memory, the in-process reference implementation
// and the engine's default. Durable and distributed brokers (localq,
// natsq) implement it; psenginetest.TestBroker holds them all to the same
// rules. The engine takes one with psengine.WithBroker.
package broker

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/polyswarm/psengine/internal/jobq"
	"github.com/polyswarm/psengine/pipeline"
	"github.com/polyswarm/psengine/protocol"
)

// Job is one bounty travelling through a Broker. Make one with NewJob (the
// engine's SubmitJob does): a bounty is validated, windowed and keyed once,
// where its job is created; brokers and consumers trust a job as it comes.
type Job struct {
	// ID identifies the job for deduplication: the bounty's id and phase
	// unless the submitter chose otherwise (a webhook delivery id, say).
	ID string
	// Key identifies the bounty by its content (see BountyKey): a broker
	// refuses a job whose Key it has taken before, and still remembers, as
	// it does a repeated ID (Submit returns ErrDuplicate). Brokers remember
	// a key from the job's Submit until its bounty expires (see
	// KeyRetention); a job with an empty Key is deduplicated by its ID only.
	Key    string
	Bounty protocol.Bounty
	// Attempt is 1 on the first delivery of the job and grows by one with
	// each redelivery after a failure of the job (never after a hand-back:
	// see Handler).
	Attempt int
	// Accepted is when intake took the job: the delivery of its answer
	// ends a delivery window after it (see WithDeliveryWindow) if the
	// expiration does not end it first. Zero: when the engine takes it.
	Accepted time.Time
	// Answer, when set, is the answer the engine already gave this bounty
	// and asked the broker to keep (see AnswerKeeper) before delivering it:
	// the delivery did not finish (the process stopped or died), and the
	// engine delivers this answer again rather than scanning again.
	Answer *protocol.Analysis
	// Suspect says the job was being scanned in a process that died: the
	// engine handles it alone (no other job is taken, no other scan runs,
	// until its answer is kept), so that a second death is charged to it
	// and to no innocent neighbour (see ScanMarker).
	Suspect bool
	// Final, when set, makes this delivery the job's last: the broker is
	// giving up on it for the reason Final gives (its attempts are spent,
	// it ended the process every time it was scanned alone) and
	// dead-letters it afterwards. The engine answers it unknown, with the
	// protocol's SKIPPED comment and the reason, without scanning it, when
	// its expiration allows.
	Final string
}

// NewJob makes the job for b, taken by intake at now: it validates b (an
// error wrapping protocol.ErrMalformedBounty), gives a bounty without an expiration
// one window from now, and sets the Key (BountyKey), Attempt 1 and
// Accepted. id names the job (a webhook's delivery id); empty, it is the
// bounty's id and phase. An expired bounty is not refused here: see
// Bounty.Expired.
func NewJob(id string, b protocol.Bounty, now time.Time, window time.Duration) (Job, error) {
	if err := b.Validate(); err != nil {
		return Job{}, err
	}
	if b.Expiration.IsZero() {
		b.Expiration = now.Add(window).UTC()
	}
	if id == "" {
		id = b.ID.String() + "/" + string(cmp.Or(b.Phase, protocol.Assertion))
	}
	return Job{ID: id, Key: BountyKey(b), Bounty: b, Attempt: 1, Accepted: now.UTC()}, nil
}

// BountyKey identifies a bounty by what it asks, whatever delivery brought
// it: its id, its artifact (the sha256 when given, else the URI), its phase
// and where its answer goes. PolySwarm's signature does not cover the
// delivery id, so a replayed body under a new delivery id has the same key;
// the same artifact asked about by two submitters (two response URLs) has
// two.
func BountyKey(b protocol.Bounty) string {
	artifact := b.SHA256
	if artifact == "" {
		sum := sha256.Sum256([]byte(b.ArtifactURI))
		artifact = "uri:" + hex.EncodeToString(sum[:16])
	}
	key := b.ID.String() + "/" + artifact + "/" + string(cmp.Or(b.Phase, protocol.Assertion))
	if b.ResponseURL != "" {
		sum := sha256.Sum256([]byte(b.ResponseURL))
		key += "/" + hex.EncodeToString(sum[:8])
	}
	return key
}

// KeyRetention is how long a broker remembers a job's Key, from its Submit
// at now: until the bounty's expiration, or for window when the bounty has
// none; never less than a minute nor more than MaxKeyRetention.
func KeyRetention(b protocol.Bounty, now time.Time, window time.Duration) time.Time {
	until := b.Expiration
	if until.IsZero() {
		until = now.Add(window)
	}
	if least := now.Add(time.Minute); until.Before(least) {
		return least
	}
	if most := now.Add(MaxKeyRetention); until.After(most) {
		return most
	}
	return until
}

// MaxKeyRetention bounds how long a key is remembered, so that a bounty
// with an expiration far ahead cannot pin memory or disk.
const MaxKeyRetention = 24 * time.Hour

// DefaultKeyWindow is how long brokers remember the Key of a job whose
// bounty has no expiration (the engine's Submit gives every bounty one).
const DefaultKeyWindow = time.Hour

// Errors of a broker's calls.
var (
	// ErrClosed: the broker (or the engine) is shut down and takes no new work.
	ErrClosed = errors.New("psengine: closed")
	// ErrQueueFull: the broker cannot take the job now; retry later.
	ErrQueueFull = errors.New("psengine: queue full")
	// ErrDuplicate: the broker refused a job it has (or recently had):
	// its ID is pending or was settled, or its bounty's Key was taken.
	ErrDuplicate = errors.New("psengine: duplicate job")
	// ErrNoDeadLetter: a DeadLetterStore has no dead letter of that job.
	ErrNoDeadLetter = errors.New("psengine: no such dead letter")
)

// AnswerKeeper is a Broker that keeps a job's answer for its redeliveries:
// the engine calls KeepAnswer once it has the answer and before it delivers
// it, so that a process that stops or dies during the delivery costs a new
// POST, never a second scan. KeepAnswer returns once the answer is kept as
// durably as the job itself; the job's later deliveries carry it in
// Job.Answer until the job is settled, and then it is forgotten with the
// job. A job that is not pending (settled, never submitted) keeps nothing:
// KeepAnswer returns an error. The broker may keep answer as it is: the
// caller does not modify it afterwards.
type AnswerKeeper interface {
	KeepAnswer(ctx context.Context, job Job, answer protocol.Analysis) error
}

// ScanMarker is a Broker that records which jobs are being scanned, so that
// a process death (a scanner's os.Exit, a fatal error) is charged to the
// job that caused it. The engine calls MarkScanning just before a job's
// scan in this process waits for its worker (not with the process backend:
// a child's death is charged to its one job directly); a few times
// WithWorkers jobs at most are marked at once; KeepAnswer ends the mark.
// A job found marked after the process died is delivered again as a
// Suspect, not counting an attempt; a suspect found marked (it died
// scanning alone) counts one, and after its broker's attempts it is given
// a last call (Job.Final) and dead-lettered. MarkScanning returns once the
// mark is as durable as the job; a failure is logged and the scan goes on.
type ScanMarker interface {
	MarkScanning(ctx context.Context, job Job) error
}

// Handler processes one job. Returning nil settles it (the engine returns
// once the answer was delivered or given up on); an error wrapping
// pipeline.ErrPermanent dead-letters it at once. Any other error is a failure of the
// job, which is delivered again with backoff and its attempt raised, up to
// the broker's limit, then given a last call (Job.Final) and dead-lettered,
// unless the consumer's ctx is done by the time the handler returns: then
// the job was cut short by our own stop and is handed back, as it was, its
// attempt not raised.
type Handler func(ctx context.Context, job Job) error

// Broker is the queue behind the engine's Submit and Serve. The in-process
// Memory is the default and the reference; localq is a durable one for
// a machine; a distributed one (such as NATS JetStream, in its own module)
// drops in. psenginetest.TestBroker holds every implementation to the same
// rules.
type Broker interface {
	// Submit returns once the broker has durably accepted job (for
	// Memory: queued in memory). It returns an error wrapping
	// ErrDuplicate for a job whose ID is pending or was recently settled, or
	// whose Key was taken (see Job.Key); ErrQueueFull when the job cannot be
	// taken now (retry later); ErrClosed after Close.
	Submit(ctx context.Context, job Job) error
	// Consume calls h for each job delivered to it, one at a time, until
	// ctx ends (then it returns ctx's error, after h returned) or the broker
	// is closed and has nothing left for it (then nil). A consumer whose ctx
	// is done takes no new job. Several Consume calls may run at once and
	// share the jobs; h is never called after Consume returned.
	Consume(ctx context.Context, h Handler) error
	// Close stops intake: Submit returns ErrClosed from then on. A broker
	// whose jobs live in this process (the Memory, localq) still
	// hands them to consumers, and Consume returns once none is left; a
	// distributed one hands out no more. Close is idempotent.
	Close()
	// Drain waits until this process holds no job of the broker's (none
	// queued here, running or waiting for a retry) and returns nil, or ctx
	// ends first and it returns ctx's error.
	Drain(ctx context.Context) error
}

// DeadLetter is a job a broker gave up on, with the reason.
type DeadLetter struct {
	Job Job
	Err error
	At  time.Time // when it was given up on
}

// DeadLetterStore is a Broker whose dead letters an operator can see and act
// on (`ENGINE deadletters list|requeue|drop`). Requeue delivers a dead
// letter's job again as new (attempt 1), with the answer it kept if any;
// Drop forgets it. Both name it by its job ID and return an error wrapping
// ErrNoDeadLetter when there is none.
type DeadLetterStore interface {
	DeadLetters(ctx context.Context) ([]DeadLetter, error)
	Requeue(ctx context.Context, id string) error
	Drop(ctx context.Context, id string) error
}

// MemoryConfig configures a Memory. The zero value is usable.
type MemoryConfig struct {
	Capacity    int              // jobs pending at most before Submit answers ErrQueueFull (default 1024)
	MaxAttempts int              // deliveries of a job before its last call (default 5)
	Backoff     pipeline.Backoff // delay before a redelivery (zero value: pipeline's defaults)
	DedupeSize  int              // IDs of settled jobs remembered for deduplication (default 4096)
	DeadLetters int              // dead letters kept, the newest (default 1000)
	// KeyWindow is how long the Key of a job whose bounty has no
	// expiration is remembered (default DefaultKeyWindow); see KeyRetention.
	KeyWindow time.Duration
	// OnDeadLetter, when set, is called (in the consumer's goroutine) for
	// each job dead-lettered.
	OnDeadLetter func(DeadLetter)
}

// Memory is an in-process Broker: a bounded queue with deduplication
// (by job ID and by Key), redelivery with backoff, answers kept for
// redeliveries (AnswerKeeper) and dead letters (DeadLetterStore). It is what
// an engine uses when given no broker; nothing survives the process. Safe
// for concurrent use.
type Memory struct {
	cfg MemoryConfig
	q   *jobq.Queue[Job]

	mu        sync.Mutex
	done      map[string]struct{}
	doneLog   []string
	keys      map[string]time.Time // Key -> when it is forgotten
	nextSweep time.Time            // when expired keys are next removed
	dead      []DeadLetter
}

// NewMemory returns an empty, open Memory.
func NewMemory(cfg MemoryConfig) *Memory {
	if cfg.Capacity <= 0 {
		cfg.Capacity = 1024
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.DedupeSize <= 0 {
		cfg.DedupeSize = 4096
	}
	if cfg.DeadLetters <= 0 {
		cfg.DeadLetters = 1000
	}
	if cfg.KeyWindow <= 0 {
		cfg.KeyWindow = DefaultKeyWindow
	}
	m := &Memory{cfg: cfg, done: make(map[string]struct{}), keys: make(map[string]time.Time)}
	m.q = jobq.New(jobq.Config[Job]{MaxAttempts: cfg.MaxAttempts, Backoff: cfg.Backoff, OnSettled: m.settled})
	return m
}

var (
	_ Broker          = (*Memory)(nil)
	_ AnswerKeeper    = (*Memory)(nil)
	_ DeadLetterStore = (*Memory)(nil)
)

// Submit queues job; see Broker.
func (m *Memory) Submit(ctx context.Context, job Job) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	job.Attempt = max(job.Attempt, 1)
	if job.ID == "" {
		job.ID = job.Bounty.ID.String()
	}
	job.Answer, job.Final = nil, "" // answers are kept by KeepAnswer only
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if _, ok := m.done[job.ID]; ok || m.q.Pending(job.ID) {
		return fmt.Errorf("%w: job %s", ErrDuplicate, job.ID)
	}
	if job.Key != "" {
		if until, ok := m.keys[job.Key]; ok && now.Before(until) {
			return fmt.Errorf("%w: bounty %s", ErrDuplicate, job.Key)
		}
	}
	if n := m.q.Len(); n >= m.cfg.Capacity {
		return fmt.Errorf("%w: %d jobs pending", ErrQueueFull, n)
	}
	if !m.q.Add(&jobq.Entry[Job]{ID: job.ID, Attempt: job.Attempt, Job: job}) {
		return ErrClosed
	}
	if now.After(m.nextSweep) {
		for k, until := range m.keys {
			if !now.Before(until) {
				delete(m.keys, k)
			}
		}
		m.nextSweep = now.Add(time.Minute)
	}
	if job.Key != "" {
		m.keys[job.Key] = KeyRetention(job.Bounty, now, m.cfg.KeyWindow)
	}
	return nil
}

// Consume delivers jobs to h; see Broker.
func (m *Memory) Consume(ctx context.Context, h Handler) error {
	return m.q.Consume(ctx, func(ctx context.Context, e *jobq.Entry[Job]) error {
		return h(ctx, entryJob(e))
	})
}

// entryJob is the job of e as its handler sees it.
func entryJob(e *jobq.Entry[Job]) Job {
	job := e.Job
	job.Attempt, job.Final = e.Attempt, e.Final
	return job
}

// settled remembers settled jobs for deduplication and keeps dead letters.
func (m *Memory) settled(e *jobq.Entry[Job], s jobq.Settlement, reason error) {
	if s != jobq.Done && s != jobq.Dead {
		return
	}
	var dead *DeadLetter
	m.mu.Lock()
	m.done[e.ID] = struct{}{}
	m.doneLog = append(m.doneLog, e.ID)
	if len(m.doneLog) > m.cfg.DedupeSize {
		delete(m.done, m.doneLog[0])
		m.doneLog = m.doneLog[1:]
	}
	if s == jobq.Dead {
		dead = &DeadLetter{Job: entryJob(e), Err: reason, At: time.Now().UTC()}
		m.dead = append(m.dead, *dead)
		if len(m.dead) > m.cfg.DeadLetters {
			m.dead = slices.Delete(m.dead, 0, 1)
		}
	}
	m.mu.Unlock()
	if dead != nil && m.cfg.OnDeadLetter != nil {
		_ = pipeline.Protect(func() { m.cfg.OnDeadLetter(*dead) })
	}
}

// KeepAnswer keeps answer for the redeliveries of job, a job pending on m;
// see AnswerKeeper.
func (m *Memory) KeepAnswer(ctx context.Context, job Job, answer protocol.Analysis) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !m.q.Update(job.ID, func(e *jobq.Entry[Job]) { e.Job.Answer = &answer; e.Job.Suspect = false }) {
		return fmt.Errorf("psengine: keeping the answer of job %q: the job is not pending", job.ID)
	}
	return nil
}

// Close stops intake: Submit answers ErrClosed, while queued jobs and
// redeliveries are still handed to consumers; once none is left, Consume
// returns nil. Close is idempotent.
func (m *Memory) Close() { m.q.Close() }

// Drain waits until no job is queued, running or waiting for redelivery,
// or ctx ends (then it returns ctx's error).
func (m *Memory) Drain(ctx context.Context) error { return m.q.Drain(ctx) }

// Abandon closes the broker and removes every job not yet handed out
// (queued or waiting for redelivery), returning them; jobs running now are
// settled as usual but not queued again. Consume returns nil. Nothing of
// the jobs abandoned survives: the engine reports them to its error hooks
// (ErrShutdown) when Shutdown's deadline passes.
func (m *Memory) Abandon() []Job {
	es := m.q.Abandon()
	out := make([]Job, 0, len(es))
	for _, e := range es {
		out = append(out, entryJob(e))
	}
	return out
}

// DeadLetters returns the jobs given up on (the newest
// MemoryConfig.DeadLetters), oldest first; see DeadLetterStore.
func (m *Memory) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.dead), nil
}

// Requeue delivers the dead letter of job id again; see DeadLetterStore.
func (m *Memory) Requeue(ctx context.Context, id string) error { return m.takeDead(ctx, id, true) }

// Drop forgets the dead letter of job id; see DeadLetterStore.
func (m *Memory) Drop(ctx context.Context, id string) error { return m.takeDead(ctx, id, false) }

// takeDead removes the dead letter of job id, queueing its job again as
// new first when requeue.
func (m *Memory) takeDead(ctx context.Context, id string, requeue bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.IndexFunc(m.dead, func(d DeadLetter) bool { return d.Job.ID == id })
	if i < 0 {
		return fmt.Errorf("%w: %q", ErrNoDeadLetter, id)
	}
	if requeue {
		job := m.dead[i].Job
		job.Attempt, job.Final, job.Suspect = 1, "", false
		if !m.q.Add(&jobq.Entry[Job]{ID: job.ID, Attempt: 1, Job: job}) {
			return ErrClosed
		}
		delete(m.done, id)
	}
	m.dead = slices.Delete(m.dead, i, i+1)
	return nil
}

// Len returns the number of jobs pending (queued, running or waiting for a
// redelivery).
func (m *Memory) Len() int { return m.q.Len() }
