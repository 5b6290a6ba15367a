package psengine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/polyswarm/psengine/pipeline"
)

// Job is one bounty travelling through a Broker.
type Job struct {
	// ID identifies the job for deduplication: the bounty's id unless the
	// submitter chose otherwise (a webhook delivery id, say).
	ID string
	// Key identifies the bounty by its content (see BountyKey; Engine.Submit
	// sets it when it is empty): a broker takes a job whose Key it has taken
	// before, and still remembers, as a duplicate, as it does a repeated ID
	// (Submit drops it and returns nil). Brokers remember a key from the
	// job's Submit until its bounty expires (see KeyRetention); a job with
	// an empty Key is deduplicated by its ID only.
	Key    string
	Bounty Bounty
	// Attempt is 1 on the first delivery of the job and grows by one with
	// each redelivery.
	Attempt int
	// Answer, when set, is the answer the engine already gave this bounty
	// and asked the broker to keep (see AnswerKeeper) before delivering it:
	// the delivery did not finish (the worker stopped or died), and the
	// engine delivers this answer again rather than scanning again.
	Answer *Analysis
}

// BountyKey identifies a bounty by what it asks, whatever delivery brought
// it: its id, its artifact (the sha256 when given, else the URI), its phase
// and where its answer goes. PolySwarm's signature does not cover the
// delivery id, so a replayed body under a new delivery id has the same key;
// the same artifact asked about by two submitters (two response URLs) has
// two.
func BountyKey(b Bounty) string {
	artifact := b.SHA256
	if artifact == "" {
		sum := sha256.Sum256([]byte(b.ArtifactURI))
		artifact = "uri:" + hex.EncodeToString(sum[:16])
	}
	phase := b.Phase
	if phase == "" {
		phase = Assertion
	}
	key := b.ID.String() + "/" + artifact + "/" + string(phase)
	if b.ResponseURL != "" {
		sum := sha256.Sum256([]byte(b.ResponseURL))
		key += "/" + hex.EncodeToString(sum[:8])
	}
	return key
}

// KeyRetention is how long a broker remembers a job's Key, from its Submit
// at now: until the bounty's expiration, or for window when the bounty has
// none; never less than a minute nor more than MaxKeyRetention.
func KeyRetention(b Bounty, now time.Time, window time.Duration) time.Time {
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
// bounty has no expiration (Engine.Submit gives every bounty one).
const DefaultKeyWindow = time.Hour

// AnswerKeeper is a Broker that keeps a job's answer for its redeliveries:
// the engine calls KeepAnswer once it has the answer and before it delivers
// it, so that a worker that stops or dies during the delivery costs a new
// POST, never a second scan. KeepAnswer returns once the answer is kept as
// durably as the job itself; the job's later deliveries carry it in
// Job.Answer until the job is acknowledged or dead-lettered, and then it is
// forgotten with the job. A job that is not pending (acknowledged,
// dead-lettered, never submitted) keeps nothing: KeepAnswer returns an
// error. The broker may keep answer as it is: the caller does not modify
// it afterwards.
type AnswerKeeper interface {
	KeepAnswer(ctx context.Context, job Job, answer Analysis) error
}

// Handler processes one job. Returning nil acknowledges it (the engine
// returns only after the answer was delivered); an error wrapping
// ErrPermanent dead-letters it at once; any other error has it redelivered
// with backoff, up to the broker's limit, then dead-lettered.
type Handler func(ctx context.Context, job Job) error

// Broker is the queue behind Engine.Submit and Engine.Serve. The in-process
// MemoryBroker is the default and the reference; a distributed one (such
// as NATS JetStream, in its own module) drops in. psenginetest.TestBroker
// holds every implementation to the same rules.
type Broker interface {
	// Submit returns once the broker has durably accepted job (for the
	// MemoryBroker: queued in memory). A job whose ID is already queued or
	// was recently handled is dropped and Submit returns nil. It returns an
	// error wrapping ErrQueueFull when the job cannot be taken now (the
	// caller may retry later) and ErrClosed after Close.
	Submit(ctx context.Context, job Job) error
	// Consume calls h for each job delivered to it, one at a time, until
	// ctx ends (then it returns ctx's error, after h returned) or the broker
	// is closed and drained (then nil). Several Consume calls may run at
	// once and share the jobs; h is never called after Consume returned.
	Consume(ctx context.Context, h Handler) error
}

// DeadLetter is a job a broker gave up on, with the reason.
type DeadLetter struct {
	Job Job
	Err error
}

// MemoryBrokerConfig configures a MemoryBroker. The zero value is usable.
type MemoryBrokerConfig struct {
	Capacity    int              // queued jobs at most before Submit answers ErrQueueFull (default 1024)
	MaxAttempts int              // deliveries of a job before it is dead-lettered (default 5)
	Backoff     pipeline.Backoff // delay before a redelivery (zero value: pipeline's defaults)
	DedupeSize  int              // IDs of handled jobs remembered for deduplication (default 4096)
	// KeyWindow is how long the Key of a job whose bounty has no
	// expiration is remembered (default DefaultKeyWindow); see KeyRetention.
	KeyWindow time.Duration
	// OnDeadLetter, when set, is called (in the consumer's goroutine) for
	// each job dead-lettered.
	OnDeadLetter func(DeadLetter)
}

// MemoryBroker is an in-process Broker: a bounded queue with deduplication
// (by job ID and by Key), redelivery with backoff, answers kept for
// redeliveries (AnswerKeeper) and a dead-letter list. It is what an Engine
// uses when given no broker; nothing survives the process. Safe for
// concurrent use.
type MemoryBroker struct {
	cfg MemoryBrokerConfig

	mu        sync.Mutex
	queue     []Job
	ready     chan struct{} // signalled (non-blocking) when queue grows or the broker closes
	pending   map[string]Job
	done      map[string]struct{}
	doneLog   []string
	idle      chan struct{} // closed when nothing is pending; replaced when work arrives
	closed    bool
	abandoned bool
	dead      []DeadLetter
	timers    map[*time.Timer]Job
	keys      map[string]time.Time // Key -> when it is forgotten
	nextSweep time.Time            // when expired keys are next removed
}

// NewMemoryBroker returns an empty, open MemoryBroker.
func NewMemoryBroker(cfg MemoryBrokerConfig) *MemoryBroker {
	if cfg.Capacity <= 0 {
		cfg.Capacity = 1024
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.DedupeSize <= 0 {
		cfg.DedupeSize = 4096
	}
	if cfg.KeyWindow <= 0 {
		cfg.KeyWindow = DefaultKeyWindow
	}
	idle := make(chan struct{})
	close(idle)
	return &MemoryBroker{
		cfg:     cfg,
		ready:   make(chan struct{}, 1),
		pending: make(map[string]Job),
		done:    make(map[string]struct{}),
		idle:    idle,
		timers:  make(map[*time.Timer]Job),
		keys:    make(map[string]time.Time),
	}
}

var (
	_ Broker       = (*MemoryBroker)(nil)
	_ AnswerKeeper = (*MemoryBroker)(nil)
)

func (m *MemoryBroker) signal() {
	select {
	case m.ready <- struct{}{}:
	default:
	}
}

// Submit queues job; see Broker.
func (m *MemoryBroker) Submit(ctx context.Context, job Job) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if job.Attempt < 1 {
		job.Attempt = 1
	}
	if job.ID == "" {
		job.ID = job.Bounty.ID.String()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if _, ok := m.pending[job.ID]; ok {
		return nil
	}
	if _, ok := m.done[job.ID]; ok {
		return nil
	}
	now := time.Now()
	if job.Key != "" {
		if until, ok := m.keys[job.Key]; ok && now.Before(until) {
			return nil
		}
	}
	if len(m.queue) >= m.cfg.Capacity {
		return fmt.Errorf("%w: %d jobs queued", ErrQueueFull, len(m.queue))
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
	job.Answer = nil // answers are kept by KeepAnswer only
	if len(m.pending) == 0 {
		m.idle = make(chan struct{})
	}
	m.pending[job.ID] = job
	m.queue = append(m.queue, job)
	m.signal()
	return nil
}

// next takes the next job, waiting for one. ok is false when the broker is
// closed and has nothing left to deliver now.
func (m *MemoryBroker) next(ctx context.Context) (Job, bool, error) {
	for {
		m.mu.Lock()
		if len(m.queue) > 0 {
			job := m.queue[0]
			m.queue[0] = Job{}
			m.queue = m.queue[1:]
			if len(m.queue) > 0 {
				m.signal() // let another consumer take the next one
			}
			m.mu.Unlock()
			return job, true, nil
		}
		drained := m.closed && len(m.pending) == 0
		m.mu.Unlock()
		if drained {
			m.signal() // wake the other consumers so they see it too
			return Job{}, false, nil
		}
		select {
		case <-ctx.Done():
			return Job{}, false, ctx.Err()
		case <-m.ready:
		}
	}
}

// Consume delivers jobs to h; see Broker.
func (m *MemoryBroker) Consume(ctx context.Context, h Handler) error {
	for {
		job, ok, err := m.next(ctx)
		if err != nil || !ok {
			return err
		}
		herr := pipeline.Protect(func() { err = h(ctx, job) })
		if herr != nil {
			err = herr
		}
		m.settle(job, err)
	}
}

// settle acknowledges, redelivers or dead-letters job after its handler.
func (m *MemoryBroker) settle(job Job, err error) {
	var dead *DeadLetter
	m.mu.Lock()
	switch {
	case err == nil, m.abandoned:
		// After Abandon nothing is redelivered: the job's failure was
		// reported by its handler, as the abandoned ones are by the caller.
		m.finish(job.ID)
	case errors.Is(err, ErrPermanent) || job.Attempt >= m.cfg.MaxAttempts:
		if !errors.Is(err, ErrPermanent) {
			err = fmt.Errorf("gave up after %d attempts: %w", job.Attempt, err)
		}
		dead = &DeadLetter{Job: job, Err: err}
		m.dead = append(m.dead, *dead)
		m.finish(job.ID)
	default:
		job.Answer = m.pending[job.ID].Answer // kept meanwhile, perhaps
		job.Attempt++
		m.pending[job.ID] = job
		var t *time.Timer
		t = time.AfterFunc(m.cfg.Backoff.Delay(job.Attempt-1), func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if _, ok := m.timers[t]; !ok {
				return // abandoned
			}
			delete(m.timers, t)
			m.queue = append(m.queue, job)
			m.signal()
		})
		m.timers[t] = job
	}
	m.mu.Unlock()
	if dead != nil && m.cfg.OnDeadLetter != nil {
		_ = pipeline.Protect(func() { m.cfg.OnDeadLetter(*dead) })
	}
}

// KeepAnswer keeps answer for the redeliveries of job, a job pending on m;
// see AnswerKeeper.
func (m *MemoryBroker) KeepAnswer(ctx context.Context, job Job, answer Analysis) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.pending[job.ID]
	if !ok {
		return fmt.Errorf("psengine: keeping the answer of job %q: the job is not pending", job.ID)
	}
	p.Answer = &answer
	m.pending[job.ID] = p
	return nil
}

// finish forgets a pending job and remembers its ID for deduplication.
// Callers hold m.mu.
func (m *MemoryBroker) finish(id string) {
	delete(m.pending, id)
	m.done[id] = struct{}{}
	m.doneLog = append(m.doneLog, id)
	if len(m.doneLog) > m.cfg.DedupeSize {
		delete(m.done, m.doneLog[0])
		m.doneLog = m.doneLog[1:]
	}
	if len(m.pending) == 0 {
		m.closeIdle()
	}
	m.signal()
}

// closeIdle marks the broker idle. Callers hold m.mu.
func (m *MemoryBroker) closeIdle() {
	select {
	case <-m.idle:
	default:
		close(m.idle)
	}
}

// Close stops intake: Submit answers ErrClosed, while queued jobs and
// redeliveries are still handed to consumers; once none is left, Consume
// returns nil. Close is idempotent.
func (m *MemoryBroker) Close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.signal()
}

// Drain waits until no job is queued, running or waiting for redelivery,
// or ctx ends (then it returns ctx's error).
func (m *MemoryBroker) Drain(ctx context.Context) error {
	m.mu.Lock()
	idle := m.idle
	m.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Abandon closes the broker and removes every job not yet handled (queued
// or waiting for redelivery), returning them; jobs running now are not
// included. Use it when a shutdown deadline passes.
func (m *MemoryBroker) Abandon() []Job {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed, m.abandoned = true, true
	out := append([]Job(nil), m.queue...)
	for _, j := range m.queue {
		delete(m.pending, j.ID)
	}
	m.queue = nil
	for t, j := range m.timers {
		t.Stop()
		delete(m.timers, t)
		delete(m.pending, j.ID)
		out = append(out, j)
	}
	if len(m.pending) == 0 {
		m.closeIdle()
	}
	m.signal()
	return out
}

// DeadLetters returns the jobs given up on so far.
func (m *MemoryBroker) DeadLetters() []DeadLetter {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]DeadLetter(nil), m.dead...)
}

// Len returns the number of jobs pending (queued, running or waiting for a
// redelivery).
func (m *MemoryBroker) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pending)
}
