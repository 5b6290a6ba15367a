package localq

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/pipeline"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// DefaultFile is the store's file name in the engine's state directory.
const DefaultFile = "intake.db"

// Defaults of Config.
const (
	DefaultCapacity    = 10_000
	DefaultMaxAttempts = 5
	DefaultDeadLetters = 1000
	DefaultLockTimeout = time.Second
)

// ErrLocked is returned by Open when another process has the store open.
var ErrLocked = errors.New("localq: the store is open in another process")

// Config configures a Broker. The zero value is usable.
type Config struct {
	// Capacity is how many jobs may be recorded and not yet settled;
	// beyond, Submit returns an error wrapping psengine.ErrQueueFull
	// (default DefaultCapacity).
	Capacity int
	// MaxAttempts is how many deliveries a job gets before it is
	// dead-lettered (default DefaultMaxAttempts). A delivery during which
	// the process ended counts, once the job was recovered by an Open (see
	// the package documentation).
	MaxAttempts int
	// Backoff is the delay before a redelivery (zero value: pipeline's
	// defaults).
	Backoff pipeline.Backoff
	// KeyWindow is how long the ID and Key of a job whose bounty has no
	// expiration are remembered (default psengine.DefaultKeyWindow); see
	// psengine.KeyRetention.
	KeyWindow time.Duration
	// DeadLetters is how many dead letters the store keeps for
	// inspection; beyond, the oldest is removed (default
	// DefaultDeadLetters).
	DeadLetters int
	// LockTimeout is how long Open waits for another process to release
	// the store (default DefaultLockTimeout), then fails with ErrLocked.
	LockTimeout time.Duration
	// Logger receives the broker's warnings: jobs found expired at Open,
	// unreadable records, failed writes (default: discard).
	Logger *slog.Logger
	// OnDeadLetter, when set, is called (in the consumer's goroutine) for
	// each job dead-lettered.
	OnDeadLetter func(psengine.DeadLetter)
	// OnExpired, when set, is called by Open for each recorded job whose
	// bounty expired while no process had the store open: the job is
	// removed unanswered (an answer after the expiration does not count).
	OnExpired func(psengine.Job)

	now func() time.Time // the clock of expirations (tests)
}

// Bucket names.
var (
	bucketJobs = []byte("jobs") // sequence number -> record
	// bucketSeen remembers job IDs and keys: (when they are forgotten,
	// sequence number) -> seenValue. Keyed by time, it grows at its end and
	// is forgotten from its start, touching few pages either way.
	bucketSeen = []byte("seen")
	bucketDead = []byte("dead") // sequence number -> deadRecord
)

// Broker is a psengine.Broker whose jobs are recorded in a file (a bbolt
// store): Submit returns once the job is committed to disk, and jobs not
// settled when the process stops or dies are delivered again by the next
// Open. It is also a psengine.AnswerKeeper. Safe for concurrent use; one
// process at a time has the file open.
type Broker struct {
	cfg Config
	log *slog.Logger
	db  *bolt.DB

	mu        sync.Mutex
	seq       uint64            // the last sequence number given to a job
	queue     []*entry          // ready for delivery, in order
	ready     chan struct{}     // signalled (non-blocking) when queue grows or the broker closes
	pending   map[string]*entry // recorded and not settled: queued, running, waiting for redelivery
	timers    map[*time.Timer]*entry
	ids, keys map[string]time.Time     // remembered, with when they are forgotten
	writing   map[string]chan struct{} // "i"+ID and "k"+Key being recorded -> closed when done
	idle      chan struct{}            // closed when nothing is pending
	deadCount int                      // records in bucketDead
	nextSweep time.Time                // when expired IDs and keys are next forgotten
	closed    bool                     // Close: no new jobs
	abandoned bool                     // Abandon: no more deliveries
	released  bool                     // Release: the file is closed
	ops       sync.WaitGroup           // Submit, settle and KeepAnswer calls writing to the store
}

type entry struct {
	seq uint64
	job psengine.Job
	// recovered: the job was found in the store at Open. Before a consumer
	// takes it, its record is marked running, so that a job that ends the
	// process (a scanner's os.Exit or fatal error) counts its attempts
	// across restarts and is dead-lettered after MaxAttempts, not run
	// forever. Jobs of this process's own lifetime go unmarked (no extra
	// write per job): when one ends the process, the next Open recovers
	// it, and it is counted from then on.
	recovered bool
}

var (
	_ psengine.Broker       = (*Broker)(nil)
	_ psengine.AnswerKeeper = (*Broker)(nil)
)

// Open opens (creating it and its directory when missing) the store at
// path and returns a broker with the jobs it records queued for delivery:
// those a previous process accepted and did not settle. Jobs whose bounty
// expired meanwhile are removed and reported (Config.OnExpired and a
// warning naming each). It fails with ErrLocked when another process has
// the store open for longer than Config.LockTimeout.
func Open(path string, cfg Config) (*Broker, error) {
	if cfg.Capacity <= 0 {
		cfg.Capacity = DefaultCapacity
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.KeyWindow <= 0 {
		cfg.KeyWindow = psengine.DefaultKeyWindow
	}
	if cfg.DeadLetters <= 0 {
		cfg.DeadLetters = DefaultDeadLetters
	}
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = DefaultLockTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("localq: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: cfg.LockTimeout,
		// The free list is rebuilt at Open rather than written with every
		// commit: fewer pages to sync per Submit.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("localq: opening %s: %w", path, err)
	}
	// A batch commits once it holds MaxBatchSize writes or MaxBatchDelay
	// after its first: 1 ms (bbolt's default is 10) keeps a lone Submit
	// quick and still lets concurrent ones share a sync.
	db.MaxBatchDelay = time.Millisecond
	idle := make(chan struct{})
	close(idle)
	q := &Broker{
		cfg:     cfg,
		log:     cfg.Logger,
		db:      db,
		ready:   make(chan struct{}, 1),
		pending: make(map[string]*entry),
		timers:  make(map[*time.Timer]*entry),
		ids:     make(map[string]time.Time),
		keys:    make(map[string]time.Time),
		writing: make(map[string]chan struct{}),
		idle:    idle,
	}
	if err := q.load(cfg.now()); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("localq: reading %s: %w", path, err)
	}
	return q, nil
}

// commit has fn committed to the store, with the writes of the other
// goroutines committing meanwhile (bbolt's DB.Batch), and returns its
// outcome once the commit is synced. fn may run more than once: when a
// write of the batch fails, each is committed alone.
func (q *Broker) commit(fn func(tx *bolt.Tx) error) error { return q.db.Batch(fn) }

// load reads the store into memory: the jobs to deliver, the remembered
// IDs and keys. It removes what is over: expired jobs, forgotten IDs and
// keys, unreadable records.
func (q *Broker) load(now time.Time) error {
	var expired []psengine.Job
	var dead []psengine.DeadLetter
	err := q.db.Update(func(tx *bolt.Tx) error {
		expired, dead = expired[:0], dead[:0]
		q.queue, q.seq = q.queue[:0], 0
		clear(q.pending)
		for _, name := range [][]byte{bucketJobs, bucketSeen, bucketDead} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		jobs := tx.Bucket(bucketJobs)
		c := jobs.Cursor()
		for k, v := c.First(); k != nil; {
			seq := uint64(0)
			if len(k) == 8 {
				seq = binary.BigEndian.Uint64(k)
			}
			job, running, err := decodeJob(v)
			drop := false
			switch {
			case err != nil || seq == 0:
				q.log.Error("localq: removing an unreadable job record", "key", fmt.Sprintf("%x", k), "err", err)
				drop = true
			case !job.Bounty.Expiration.IsZero() && !now.Before(job.Bounty.Expiration):
				expired = append(expired, job)
				drop = true
			case q.pending[job.ID] != nil:
				drop = true // cannot happen: Submit records an ID once
			case running && job.Attempt >= q.cfg.MaxAttempts:
				err := fmt.Errorf("%w: gave up after %d attempts: the process ended while handling it", psengine.ErrWorkerDied, job.Attempt)
				if err := putDead(tx, job, err, 0); err != nil {
					return err
				}
				dead = append(dead, psengine.DeadLetter{Job: job, Err: err})
				drop = true
			case running:
				// The process ended while handling it: that attempt failed.
				job.Attempt++
				data, err := encodeJob(job, false)
				if err != nil {
					return err
				}
				if err := tx.Bucket(bucketJobs).Put(k, data); err != nil {
					return err
				}
				k, _ = c.Seek(k) // Put may move the cursor: resume at the key
			}
			if drop {
				if err := c.Delete(); err != nil {
					return err
				}
				k, v = c.Seek(k) // Delete moves the cursor: resume after the removed key
				continue
			}
			e := &entry{seq: seq, job: job, recovered: true}
			q.pending[job.ID] = e
			q.queue = append(q.queue, e)
			q.seq = max(q.seq, seq)
			k, v = c.Next()
		}
		if err := forgetSeen(tx, now); err != nil {
			return err
		}
		clear(q.ids)
		clear(q.keys)
		c = tx.Bucket(bucketSeen).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			until, okTime := seenTime(k)
			id, key, okValue := seenDecode(v)
			if !okTime || !okValue {
				q.log.Error("localq: an unreadable remembered id", "key", fmt.Sprintf("%x", k))
				continue
			}
			if until.After(q.ids[id]) {
				q.ids[id] = until
			}
			if key != "" && until.After(q.keys[key]) {
				q.keys[key] = until
			}
		}
		q.deadCount = tx.Bucket(bucketDead).Stats().KeyN
		if n := q.deadCount - q.cfg.DeadLetters; n > 0 {
			if err := dropOldestDead(tx, n); err != nil {
				return err
			}
			q.deadCount -= n
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range dead {
		q.deadLettered(d)
	}
	for _, job := range expired {
		q.log.Warn("localq: a recorded bounty expired while the engine was stopped: removed unanswered",
			"job", job.ID, "bounty", job.Bounty.ID.String(), "expiration", job.Bounty.Expiration)
		if q.cfg.OnExpired != nil {
			_ = pipeline.Protect(func() { q.cfg.OnExpired(job) })
		}
	}
	if len(q.pending) > 0 {
		q.idle = make(chan struct{})
		q.signal()
	}
	q.nextSweep = now.Add(time.Minute)
	return nil
}

func (q *Broker) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// remembered tells whether s (an ID or a key of m) is remembered at now.
// Callers hold q.mu.
func remembered(m map[string]time.Time, s string, now time.Time) bool {
	until, ok := m[s]
	return ok && now.Before(until)
}

// Submit records job and returns once it is committed to the store; see
// psengine.Broker. A job whose ID or Key is remembered (pending, or
// settled and its bounty not yet expired) is dropped and Submit returns
// nil. A bounty that fails Validate is refused (the error wraps
// psengine.ErrMalformedBounty). The job's Answer is not recorded (see
// KeepAnswer).
func (q *Broker) Submit(ctx context.Context, job psengine.Job) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if job.Attempt < 1 {
		job.Attempt = 1
	}
	if job.ID == "" {
		job.ID = job.Bounty.ID.String()
	}
	job.Answer = nil
	if err := job.Bounty.Validate(); err != nil {
		return err // only what can be answered is recorded
	}
	idSlot, keySlot := "i"+job.ID, ""
	if job.Key != "" {
		keySlot = "k" + job.Key
	}
	var (
		e           *entry
		until       time.Time
		sweep       bool // forget expired IDs and keys in the store too
		done        chan struct{}
		waitForPrev chan struct{}
	)
	for {
		q.mu.Lock()
		if q.closed || q.released {
			q.mu.Unlock()
			return psengine.ErrClosed
		}
		// A job with the same ID or Key being recorded now: its outcome
		// decides (dropped if it is recorded, taken if it failed).
		waitForPrev = q.writing[idSlot]
		if waitForPrev == nil && keySlot != "" {
			waitForPrev = q.writing[keySlot]
		}
		if waitForPrev != nil {
			q.mu.Unlock()
			select {
			case <-waitForPrev:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		break
	}
	now := q.cfg.now()
	if q.pending[job.ID] != nil || remembered(q.ids, job.ID, now) || (job.Key != "" && remembered(q.keys, job.Key, now)) {
		q.mu.Unlock()
		return nil
	}
	if n := len(q.pending) + len(q.writing); n >= q.cfg.Capacity {
		q.mu.Unlock()
		return fmt.Errorf("%w: %d jobs recorded", psengine.ErrQueueFull, n)
	}
	if now.After(q.nextSweep) {
		q.sweep(now)
		sweep = true
	}
	q.seq++
	e = &entry{seq: q.seq, job: job}
	until = psengine.KeyRetention(job.Bounty, now, q.cfg.KeyWindow)
	done = make(chan struct{})
	q.writing[idSlot] = done
	if keySlot != "" {
		q.writing[keySlot] = done
	}
	q.ops.Add(1)
	q.mu.Unlock()
	defer q.ops.Done()

	data, err := encodeJob(job, false)
	if err == nil {
		err = q.commit(func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketJobs).Put(seqKey(e.seq), data); err != nil {
				return err
			}
			if err := tx.Bucket(bucketSeen).Put(seenKey(until, e.seq), seenValue(job.ID, job.Key)); err != nil {
				return err
			}
			if sweep {
				return forgetSeen(tx, now)
			}
			return nil
		})
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.writing, idSlot)
	if keySlot != "" {
		delete(q.writing, keySlot)
	}
	close(done)
	if err != nil {
		return fmt.Errorf("localq: recording job %s: %w", job.ID, err)
	}
	q.ids[job.ID] = until
	if job.Key != "" {
		q.keys[job.Key] = until
	}
	if len(q.pending) == 0 {
		q.idle = make(chan struct{})
	}
	q.pending[job.ID] = e
	if !q.abandoned { // else it waits in the store for the next Open
		q.queue = append(q.queue, e)
		q.signal()
	}
	return nil
}

// sweep forgets, in memory, the IDs and keys whose time passed (the IDs
// of pending jobs stay: they are deduplicated as pending). Callers hold
// q.mu.
func (q *Broker) sweep(now time.Time) {
	for id, until := range q.ids {
		if !now.Before(until) {
			delete(q.ids, id)
		}
	}
	for key, until := range q.keys {
		if !now.Before(until) {
			delete(q.keys, key)
		}
	}
	q.nextSweep = now.Add(time.Minute)
}

// forgetSeen removes the remembered IDs and keys whose time passed from
// the store: the start of bucketSeen.
func forgetSeen(tx *bolt.Tx, now time.Time) error {
	c := tx.Bucket(bucketSeen).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.First() {
		if until, ok := seenTime(k); ok && now.Before(until) {
			return nil
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// next takes the next job, waiting for one. ok is false when the broker is
// closed and has nothing left to deliver now.
func (q *Broker) next(ctx context.Context) (*entry, bool, error) {
	for {
		q.mu.Lock()
		if q.released {
			q.mu.Unlock()
			q.signal()
			return nil, false, psengine.ErrClosed
		}
		if len(q.queue) > 0 {
			e := q.queue[0]
			q.queue[0] = nil
			q.queue = q.queue[1:]
			if len(q.queue) > 0 {
				q.signal() // let another consumer take the next one
			}
			q.mu.Unlock()
			return e, true, nil
		}
		drained := q.closed && len(q.pending) == 0
		q.mu.Unlock()
		if drained {
			q.signal() // wake the other consumers so they see it too
			return nil, false, nil
		}
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-q.ready:
		}
	}
}

// Consume delivers jobs to h; see psengine.Broker. After Release it returns
// psengine.ErrClosed.
func (q *Broker) Consume(ctx context.Context, h psengine.Handler) error {
	for {
		e, ok, err := q.next(ctx)
		if err != nil || !ok {
			return err
		}
		if e.recovered {
			q.markRunning(e)
		}
		herr := pipeline.Protect(func() { err = h(ctx, e.job) })
		if herr != nil {
			err = herr
		}
		q.settle(e, err)
	}
}

// markRunning records that a consumer took e (see entry.recovered), and
// returns once that is on disk. A failure is logged: the job is then
// handled unmarked.
func (q *Broker) markRunning(e *entry) {
	q.mu.Lock()
	if q.released {
		q.mu.Unlock()
		return
	}
	q.ops.Add(1)
	q.mu.Unlock()
	defer q.ops.Done()
	data, err := encodeJob(e.job, true)
	if err == nil {
		err = q.commit(func(tx *bolt.Tx) error { return tx.Bucket(bucketJobs).Put(seqKey(e.seq), data) })
	}
	if err != nil {
		q.log.Error("localq: marking a recovered job as running failed", "job", e.job.ID, "err", err)
	}
}

// settle acknowledges, redelivers or dead-letters a job after its handler:
// first in the store, then in memory.
func (q *Broker) settle(e *entry, herr error) {
	q.mu.Lock()
	if cur := q.pending[e.job.ID]; cur != nil {
		e.job.Answer = cur.job.Answer // kept during the handler, perhaps
	}
	abandoned, released := q.abandoned, q.released
	if !released {
		q.ops.Add(1)
		defer q.ops.Done()
	}
	var dropDead int // dead letters to remove, oldest first, to keep cfg.DeadLetters
	if herr != nil && (errors.Is(herr, psengine.ErrPermanent) || e.job.Attempt >= q.cfg.MaxAttempts) {
		q.deadCount++
		dropDead = max(0, q.deadCount-q.cfg.DeadLetters)
		q.deadCount -= dropDead
	}
	q.mu.Unlock()

	job := e.job
	var dead *psengine.DeadLetter
	var write func(tx *bolt.Tx) error
	switch {
	case herr == nil:
		write = func(tx *bolt.Tx) error { return tx.Bucket(bucketJobs).Delete(seqKey(e.seq)) }
	case errors.Is(herr, psengine.ErrPermanent) || job.Attempt >= q.cfg.MaxAttempts:
		if !errors.Is(herr, psengine.ErrPermanent) {
			herr = fmt.Errorf("gave up after %d attempts: %w", job.Attempt, herr)
		}
		dead = &psengine.DeadLetter{Job: job, Err: herr}
		write = func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketJobs).Delete(seqKey(e.seq)); err != nil {
				return err
			}
			return putDead(tx, job, herr, dropDead)
		}
	default:
		job.Attempt++
		data, err := encodeJob(job, false)
		write = func(tx *bolt.Tx) error {
			if err != nil {
				return err
			}
			return tx.Bucket(bucketJobs).Put(seqKey(e.seq), data)
		}
	}
	if released {
		q.log.Error("localq: a job settled after Release: the store keeps it as it was", "job", job.ID)
	} else if err := q.commit(write); err != nil {
		// The store still has the job as it was: the next Open delivers
		// it again (at least once); this process goes on.
		q.log.Error("localq: recording the outcome of a job failed", "job", job.ID, "err", err)
	}

	q.mu.Lock()
	switch {
	case herr == nil, dead != nil:
		q.forgetPending(job.ID)
	case abandoned || q.abandoned || q.released:
		// Recorded with its attempt raised, for the next Open.
		q.forgetPending(job.ID)
	default:
		ne := &entry{seq: e.seq, job: job, recovered: e.recovered}
		q.pending[job.ID] = ne
		var t *time.Timer
		t = time.AfterFunc(q.cfg.Backoff.Delay(job.Attempt-1), func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			if _, ok := q.timers[t]; !ok {
				return // abandoned or released
			}
			delete(q.timers, t)
			q.queue = append(q.queue, ne)
			q.signal()
		})
		q.timers[t] = ne
	}
	q.mu.Unlock()
	if dead != nil {
		q.deadLettered(*dead)
	}
}

// deadLettered logs a dead letter and calls Config.OnDeadLetter.
func (q *Broker) deadLettered(d psengine.DeadLetter) {
	q.log.Error("localq: job given up on (dead-lettered)", "job", d.Job.ID, "bounty", d.Job.Bounty.ID.String(),
		"attempts", d.Job.Attempt, "err", d.Err)
	if q.cfg.OnDeadLetter != nil {
		_ = pipeline.Protect(func() { q.cfg.OnDeadLetter(d) })
	}
}

// putDead records job as a dead letter given up with err, then removes
// the drop oldest dead letters.
func putDead(tx *bolt.Tx, job psengine.Job, err error, drop int) error {
	data, encErr := encodeJob(job, false)
	if encErr != nil {
		return encErr
	}
	rec, encErr := json.Marshal(deadRecord{Job: data, Err: err.Error(), At: time.Now().UTC()})
	if encErr != nil {
		return encErr
	}
	b := tx.Bucket(bucketDead)
	n, err := b.NextSequence()
	if err != nil {
		return err
	}
	if err := b.Put(seqKey(n), rec); err != nil {
		return err
	}
	return dropOldestDead(tx, drop)
}

// dropOldestDead removes the n oldest dead letters.
func dropOldestDead(tx *bolt.Tx, n int) error {
	c := tx.Bucket(bucketDead).Cursor()
	for ; n > 0; n-- {
		if k, _ := c.First(); k == nil {
			break
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// forgetPending removes a settled job from memory. Callers hold q.mu.
func (q *Broker) forgetPending(id string) {
	delete(q.pending, id)
	q.pendingChanged()
}

// pendingChanged marks the broker idle once nothing is pending, and wakes
// the consumers. Callers hold q.mu.
func (q *Broker) pendingChanged() {
	if len(q.pending) == 0 {
		select {
		case <-q.idle:
		default:
			close(q.idle)
		}
	}
	q.signal()
}

// KeepAnswer records answer with job, a job being handled, and returns once
// it is committed: if the process stops or dies before the job is settled,
// its next delivery (after the next Open, then) carries the answer in
// Job.Answer. See psengine.AnswerKeeper.
func (q *Broker) KeepAnswer(ctx context.Context, job psengine.Job, answer psengine.Analysis) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q.mu.Lock()
	e := q.pending[job.ID]
	if e == nil || q.released {
		q.mu.Unlock()
		return fmt.Errorf("localq: keeping the answer of job %q: the job is not pending", job.ID)
	}
	kept := e.job
	kept.Answer = &answer
	seq, running := e.seq, e.recovered
	q.ops.Add(1)
	q.mu.Unlock()
	defer q.ops.Done()

	data, err := encodeJob(kept, running)
	if err == nil {
		err = q.commit(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketJobs)
			if b.Get(seqKey(seq)) == nil {
				return errors.New("the job was settled meanwhile")
			}
			return b.Put(seqKey(seq), data)
		})
	}
	if err != nil {
		return fmt.Errorf("localq: keeping the answer of job %q: %w", job.ID, err)
	}
	q.mu.Lock()
	if cur := q.pending[job.ID]; cur != nil && cur.seq == seq {
		cur.job.Answer = &answer
	}
	q.mu.Unlock()
	return nil
}

// Close stops intake: Submit answers psengine.ErrClosed, while recorded
// jobs and redeliveries are still handed to consumers; once none is left,
// Consume returns nil. It does not close the file (see Release). Close is
// idempotent.
func (q *Broker) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// Drain waits until no job is queued, running or waiting for redelivery,
// or ctx ends (then it returns ctx's error).
func (q *Broker) Drain(ctx context.Context) error {
	q.mu.Lock()
	idle := q.idle
	q.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Abandon closes the broker and stops delivering: the jobs not yet handed
// to a consumer (queued, or waiting for a redelivery) are returned and stay
// recorded for the next Open, as do the running jobs whose handler fails.
// Consume returns nil once the running jobs are settled. Use it when a
// shutdown deadline passes.
func (q *Broker) Abandon() []psengine.Job {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed, q.abandoned = true, true
	var out []*entry
	out = append(out, q.queue...)
	q.queue = nil
	for t, e := range q.timers {
		t.Stop()
		delete(q.timers, t)
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *entry) int { return compareSeq(a.seq, b.seq) })
	jobs := make([]psengine.Job, 0, len(out))
	for _, e := range out {
		delete(q.pending, e.job.ID)
		jobs = append(jobs, e.job)
	}
	q.pendingChanged()
	return jobs
}

func compareSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Release closes the store's file, after the writes under way; the broker
// is closed (Submit and KeepAnswer fail, Consume returns
// psengine.ErrClosed). Jobs not settled stay recorded for the next Open.
// Call it once the consumers returned. Later calls return nil.
func (q *Broker) Release() error {
	q.mu.Lock()
	if q.released {
		q.mu.Unlock()
		return nil
	}
	q.closed, q.released = true, true
	for t := range q.timers {
		t.Stop()
		delete(q.timers, t)
	}
	q.queue = nil
	q.mu.Unlock()
	q.signal()
	q.ops.Wait()
	return q.db.Close()
}

// Len returns the number of jobs pending in this process: recorded and
// not settled (queued, running or waiting for a redelivery). Right after
// Open, it is the number of jobs resumed.
func (q *Broker) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// Recorded returns the jobs the store holds and no consumer settled, in
// order of arrival: what the next Open delivers if this process stops now.
func (q *Broker) Recorded(ctx context.Context) ([]psengine.Job, error) {
	var jobs []psengine.Job
	err := q.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketJobs).ForEach(func(_, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if job, _, err := decodeJob(v); err == nil {
				jobs = append(jobs, job)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("localq: %w", err)
	}
	return jobs, nil
}

// DeadLetters returns the dead letters the store keeps (the newest
// Config.DeadLetters), oldest first. Their Err carries the message of the
// error the job was given up with.
func (q *Broker) DeadLetters(ctx context.Context) ([]psengine.DeadLetter, error) {
	var out []psengine.DeadLetter
	err := q.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDead).ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var d deadRecord
			if err := json.Unmarshal(v, &d); err != nil {
				q.log.Warn("localq: unreadable dead letter", "key", fmt.Sprintf("%x", k), "err", err)
				return nil
			}
			job, _, err := decodeJob(bytes.TrimSpace(d.Job))
			if err != nil {
				q.log.Warn("localq: unreadable dead letter", "key", fmt.Sprintf("%x", k), "err", err)
				return nil
			}
			out = append(out, psengine.DeadLetter{Job: job, Err: errors.New(d.Err)})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("localq: %w", err)
	}
	return out, nil
}
