package localq

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/internal/jobq"
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
	// MaxAttempts is how many failed deliveries a job gets before its last
	// call, and how many times it may end the process while scanned alone
	// (default DefaultMaxAttempts); see the package documentation.
	MaxAttempts int
	// Backoff is the delay before a redelivery (zero value: pipeline's
	// defaults).
	Backoff pipeline.Backoff
	// KeyWindow is how long the ID and Key of a job whose bounty has no
	// expiration are remembered (default broker.DefaultKeyWindow); see
	// broker.KeyRetention.
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
	OnDeadLetter func(broker.DeadLetter)
	// OnExpired, when set, is called by Open for each recorded job whose
	// bounty expired while no process had the store open: the job is
	// removed unanswered (an answer after the expiration does not count).
	OnExpired func(broker.Job)

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
	// A pending job's kept answer and scanning mark have buckets of their
	// own, so that keeping or marking writes a few bytes, not the record.
	bucketAnswers = []byte("answers") // sequence number -> psengine.Analysis JSON
	bucketMarks   = []byte("marks")   // sequence number -> empty: scanning
)

// Broker is a broker.Broker whose jobs are recorded in a file (a bbolt
// store): Submit returns once the job is committed to disk, and jobs not
// settled when the process stops or dies are delivered again by the next
// Open. It is also a broker.AnswerKeeper, a broker.ScanMarker and a
// broker.DeadLetterStore. Safe for concurrent use; one process at a time
// has the file open.
type Broker struct {
	cfg Config
	log *slog.Logger
	db  *bolt.DB
	q   *jobq.Queue[broker.Job]

	mu        sync.Mutex
	seq       uint64                   // the last sequence number given to a job
	ids, keys map[string]time.Time     // remembered, with when they are forgotten
	writing   map[string]chan struct{} // "i"+ID and "k"+Key being recorded -> closed when done
	recording int                      // Submits writing now
	scanning  map[string]bool          // jobs marked scanning in the store
	crashes   map[string]int           // recorded deaths of pending suspects
	deadCount int                      // records in bucketDead
	nextSweep time.Time                // when expired IDs and keys are next forgotten
	closed    bool                     // Close: no new jobs
	released  bool                     // Release: the file is closed
	ops       sync.WaitGroup           // writes to the store under way

	// settling holds the settlements being written, by the order they were
	// asked for (see MarkScanning's barrier).
	settlingMu   sync.Mutex
	settlingCond *sync.Cond
	settling     map[uint64]struct{}
	settleSeq    uint64
}

var (
	_ broker.Broker          = (*Broker)(nil)
	_ broker.AnswerKeeper    = (*Broker)(nil)
	_ broker.ScanMarker      = (*Broker)(nil)
	_ broker.DeadLetterStore = (*Broker)(nil)
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
		cfg.KeyWindow = broker.DefaultKeyWindow
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
	// after its first. Measured with the webhook as shipped under load
	// (BenchmarkWebhookAsShipped): at 1 ms about 2 syncs per bounty, at
	// 4 ms about 0.6 and a quarter less CPU per bounty, at 10 ms fewer
	// answers per second (each bounty waits for three commits in turn). A
	// lone Submit waits up to the delay more for its 202.
	db.MaxBatchDelay = 4 * time.Millisecond
	q := &Broker{
		cfg:      cfg,
		log:      cfg.Logger,
		db:       db,
		ids:      make(map[string]time.Time),
		keys:     make(map[string]time.Time),
		writing:  make(map[string]chan struct{}),
		scanning: make(map[string]bool),
		crashes:  make(map[string]int),
		settling: make(map[uint64]struct{}),
	}
	q.settlingCond = sync.NewCond(&q.settlingMu)
	q.q = jobq.New(jobq.Config[broker.Job]{MaxAttempts: cfg.MaxAttempts, Backoff: cfg.Backoff, Store: store{q}, OnSettled: q.settled})
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

// write runs a commit unless the store was released, counting it for
// Release; false when it was released.
func (q *Broker) write(fn func(tx *bolt.Tx) error) (bool, error) {
	q.mu.Lock()
	if q.released {
		q.mu.Unlock()
		return false, nil
	}
	q.ops.Add(1)
	q.mu.Unlock()
	defer q.ops.Done()
	return true, q.commit(fn)
}

// load reads the store into memory: the jobs to deliver, the remembered
// IDs and keys. It removes what is over (expired jobs, forgotten IDs and
// keys, unreadable records) and judges the jobs a dead process was
// scanning: each becomes a suspect, to be run alone; a suspect that died
// alone counts a crash, and after MaxAttempts of them gets its last call.
func (q *Broker) load(now time.Time) error {
	var expired []broker.Job
	var suspects, others []*jobq.Entry[broker.Job]
	err := q.db.Update(func(tx *bolt.Tx) error {
		expired, suspects, others = expired[:0], suspects[:0], others[:0]
		q.seq = 0
		clear(q.crashes)
		for _, name := range [][]byte{bucketJobs, bucketSeen, bucketDead, bucketAnswers, bucketMarks} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		seen := map[string]bool{}
		jobs := tx.Bucket(bucketJobs)
		c := jobs.Cursor()
		for k, v := c.First(); k != nil; {
			seq := uint64(0)
			if len(k) == 8 {
				seq = binary.BigEndian.Uint64(k)
			}
			s, err := readJob(tx, k, v)
			job := s.job
			drop := false
			switch {
			case err != nil || seq == 0:
				q.log.Error("localq: removing an unreadable job record", "key", fmt.Sprintf("%x", k), "err", err)
				drop = true
			case job.Bounty.Expired(now):
				expired = append(expired, job)
				drop = true
			case seen[job.ID]:
				drop = true // cannot happen: Submit records an ID once
			case s.scanning:
				// The process died while scanning it.
				if job.Suspect {
					s.crashes++ // alone: the death was its own
				}
				job.Suspect, s.scanning, s.job = true, false, job
				if s.crashes >= q.cfg.MaxAttempts {
					job.Suspect = false
					job.Final = fmt.Sprintf("%v: it ended the process each of the %d times it was scanned alone",
						psengine.ErrWorkerDied, s.crashes)
					q.log.Error("localq: a job ended the process every time it was scanned alone: giving up on it",
						"job", job.ID, "bounty", job.Bounty.ID.String(), "deaths", s.crashes)
				} else {
					q.log.Warn("localq: the process died while scanning this job: it runs alone now",
						"job", job.ID, "bounty", job.Bounty.ID.String(), "deaths_alone", s.crashes)
				}
				s.job = job
				if err := putJob(tx, k, s); err != nil {
					return err
				}
				k, _ = c.Seek(k) // Put may move the cursor: resume at the key
			}
			if drop {
				if err := c.Delete(); err != nil {
					return err
				}
				if err := deleteState(tx, k); err != nil {
					return err
				}
				k, v = c.Seek(k) // Delete moves the cursor: resume after the removed key
				continue
			}
			seen[job.ID] = true
			e := &jobq.Entry[broker.Job]{ID: job.ID, Seq: seq, Attempt: job.Attempt, Final: job.Final, Alone: job.Suspect, Job: job}
			if job.Suspect {
				q.crashes[job.ID] = s.crashes
				suspects = append(suspects, e)
			} else {
				others = append(others, e)
			}
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
	for _, job := range expired {
		q.log.Warn("localq: a recorded bounty expired while the engine was stopped: removed unanswered",
			"job", job.ID, "bounty", job.Bounty.ID.String(), "expiration", job.Bounty.Expiration)
		if q.cfg.OnExpired != nil {
			_ = pipeline.Protect(func() { q.cfg.OnExpired(job) })
		}
	}
	// Suspects first: each runs alone, before the others start.
	q.q.Restore(append(suspects, others...))
	q.nextSweep = now.Add(time.Minute)
	return nil
}

// remembered tells whether s (an ID or a key of m) is remembered at now.
// Callers hold q.mu.
func remembered(m map[string]time.Time, s string, now time.Time) bool {
	until, ok := m[s]
	return ok && now.Before(until)
}

// Submit records job and returns once it is committed to the store; see
// broker.Broker. A job whose ID or Key is remembered (pending, or
// settled and its bounty not yet expired) is refused with
// psengine.ErrDuplicate. The job is recorded as it is: it was made by
// broker.NewJob (the engine's SubmitJob), validated there. Its Answer is
// not recorded (see KeepAnswer).
func (q *Broker) Submit(ctx context.Context, job broker.Job) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	job.Attempt = max(job.Attempt, 1)
	if job.ID == "" {
		job.ID = job.Bounty.ID.String()
	}
	job.Answer, job.Suspect, job.Final = nil, false, ""
	idSlot, keySlot := "i"+job.ID, ""
	if job.Key != "" {
		keySlot = "k" + job.Key
	}
	q.mu.Lock()
	for {
		if q.closed || q.released {
			q.mu.Unlock()
			return psengine.ErrClosed
		}
		// A job with the same ID or Key being recorded now: its outcome
		// decides (refused if it is recorded, taken if it failed).
		wait := q.writing[idSlot]
		if wait == nil && keySlot != "" {
			wait = q.writing[keySlot]
		}
		if wait == nil {
			break
		}
		q.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
		q.mu.Lock()
	}
	now := q.cfg.now()
	if q.q.Pending(job.ID) || remembered(q.ids, job.ID, now) {
		q.mu.Unlock()
		return fmt.Errorf("%w: job %s", psengine.ErrDuplicate, job.ID)
	}
	if job.Key != "" && remembered(q.keys, job.Key, now) {
		q.mu.Unlock()
		return fmt.Errorf("%w: bounty %s", psengine.ErrDuplicate, job.Key)
	}
	if n := q.q.Len() + q.recording; n >= q.cfg.Capacity {
		q.mu.Unlock()
		return fmt.Errorf("%w: %d jobs recorded", psengine.ErrQueueFull, n)
	}
	sweep := false // forget expired IDs and keys in the store too
	if now.After(q.nextSweep) {
		q.sweep(now)
		sweep = true
	}
	q.seq++
	e := &jobq.Entry[broker.Job]{ID: job.ID, Seq: q.seq, Attempt: job.Attempt, Job: job}
	until := broker.KeyRetention(job.Bounty, now, q.cfg.KeyWindow)
	done := make(chan struct{})
	q.writing[idSlot] = done
	if keySlot != "" {
		q.writing[keySlot] = done
	}
	q.recording++
	q.ops.Add(1)
	q.mu.Unlock()
	defer q.ops.Done()

	data, err := encodeJob(stored{job: job})
	if err == nil {
		err = q.commit(func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketJobs).Put(seqKey(e.Seq), data); err != nil {
				return err
			}
			if err := tx.Bucket(bucketSeen).Put(seenKey(until, e.Seq), seenValue(job.ID, job.Key)); err != nil {
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
	q.recording--
	close(done)
	if err != nil {
		return fmt.Errorf("localq: recording job %s: %w", job.ID, err)
	}
	q.ids[job.ID] = until
	if job.Key != "" {
		q.keys[job.Key] = until
	}
	// Closed meanwhile: recorded all the same, for the next Open.
	_ = q.q.Add(e)
	return nil
}

// sweep forgets, in memory, the IDs and keys whose time passed (the IDs
// of pending jobs stay: they are deduplicated as pending). Callers hold
// q.mu.
func (q *Broker) sweep(now time.Time) {
	passed := func(_ string, until time.Time) bool { return !now.Before(until) }
	maps.DeleteFunc(q.ids, passed)
	maps.DeleteFunc(q.keys, passed)
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

// Consume delivers jobs to h; see broker.Broker. After Release it returns
// psengine.ErrClosed.
func (q *Broker) Consume(ctx context.Context, h broker.Handler) error {
	q.mu.Lock()
	released := q.released
	q.mu.Unlock()
	if released {
		return psengine.ErrClosed
	}
	return q.q.Consume(ctx, func(ctx context.Context, e *jobq.Entry[broker.Job]) error {
		return h(ctx, entryJob(e))
	})
}

// entryJob is the job of e as it stands: its attempt and last call are
// the queue's.
func entryJob(e *jobq.Entry[broker.Job]) broker.Job {
	job := e.Job
	job.Attempt, job.Final = e.Attempt, e.Final
	return job
}

// store records the queue's settlements in the file.
type store struct{ q *Broker }

// Settle records what becomes of a job: see jobq.Store.
func (s store) Settle(e *jobq.Entry[broker.Job], how jobq.Settlement, reason error) error {
	q := s.q
	job := entryJob(e)
	q.mu.Lock()
	wasScanning := q.scanning[job.ID]
	crashes := q.crashes[job.ID]
	var dropDead int // dead letters to remove, oldest first, to keep cfg.DeadLetters
	if how == jobq.Dead {
		q.deadCount++
		dropDead = max(0, q.deadCount-q.cfg.DeadLetters)
		q.deadCount -= dropDead
	}
	q.mu.Unlock()
	key := seqKey(e.Seq)
	var write func(tx *bolt.Tx) error
	switch how {
	case jobq.Done:
		write = func(tx *bolt.Tx) error { return deleteJob(tx, key) }
	case jobq.Dead:
		write = func(tx *bolt.Tx) error {
			if err := deleteJob(tx, key); err != nil {
				return err
			}
			return putDead(tx, job, reason, dropDead)
		}
	case jobq.HandBack:
		if !wasScanning {
			return nil // recorded as it was: nothing to write
		}
		fallthrough
	default: // Retry, LastCall, a hand-back of a job marked scanning
		write = func(tx *bolt.Tx) error {
			if tx.Bucket(bucketJobs).Get(key) == nil {
				return nil // settled meanwhile (it cannot be: one consumer holds it)
			}
			return putJob(tx, key, stored{job: job, crashes: crashes})
		}
	}
	done := q.settlingStarts()
	ok, err := q.write(write)
	done()
	switch {
	case !ok:
		q.log.Error("localq: a job settled after Release: the store keeps it as it was", "job", job.ID)
	case err != nil:
		// The store still has the job as it was: the next Open delivers
		// it again (at least once); this process goes on.
		q.log.Error("localq: recording the outcome of a job failed", "job", job.ID, "err", err)
	}
	q.mu.Lock()
	delete(q.scanning, job.ID)
	if how == jobq.Done || how == jobq.Dead {
		delete(q.crashes, job.ID)
	}
	q.mu.Unlock()
	return err
}

// settled reports dead letters.
func (q *Broker) settled(e *jobq.Entry[broker.Job], how jobq.Settlement, reason error) {
	if how != jobq.Dead {
		return
	}
	d := broker.DeadLetter{Job: entryJob(e), Err: reason, At: time.Now().UTC()}
	q.log.Error("localq: job given up on (dead-lettered)", "job", d.Job.ID, "bounty", d.Job.Bounty.ID.String(),
		"attempts", d.Job.Attempt, "err", d.Err)
	if q.cfg.OnDeadLetter != nil {
		_ = pipeline.Protect(func() { q.cfg.OnDeadLetter(d) })
	}
}

// putDead records job as a dead letter given up with err, then removes
// the drop oldest dead letters.
func putDead(tx *bolt.Tx, job broker.Job, err error, drop int) error {
	data, encErr := encodeJob(stored{job: job})
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

// MarkScanning records that job's scan starts in this process, and
// returns once that is on disk, and once every settlement asked for before
// it returns is too; see broker.ScanMarker. So should the scan end the
// process at once, no answer delivered before it is delivered again: a
// neighbour's answer delivered while its settlement was still being
// written would otherwise come back with its job (a crash in the middle of
// a long scan can still cost the answers delivered during it that much).
func (q *Broker) MarkScanning(ctx context.Context, job broker.Job) error {
	if _, err := q.update(ctx, job.ID, "marking the scan of", func(tx *bolt.Tx, key []byte) error {
		return tx.Bucket(bucketMarks).Put(key, []byte{})
	}); err != nil {
		return err
	}
	q.mu.Lock()
	q.scanning[job.ID] = true
	q.mu.Unlock()
	q.settledBefore()
	return nil
}

// settlingStarts records a settlement being written; the returned function
// records its end.
func (q *Broker) settlingStarts() (done func()) {
	q.settlingMu.Lock()
	q.settleSeq++
	seq := q.settleSeq
	q.settling[seq] = struct{}{}
	q.settlingMu.Unlock()
	return func() {
		q.settlingMu.Lock()
		delete(q.settling, seq)
		q.settlingMu.Unlock()
		q.settlingCond.Broadcast()
	}
}

// settledBefore waits until the settlements asked for so far are written
// (or failed).
func (q *Broker) settledBefore() {
	q.settlingMu.Lock()
	defer q.settlingMu.Unlock()
	upTo := q.settleSeq
	for {
		pending := false
		for seq := range q.settling {
			if seq <= upTo {
				pending = true
				break
			}
		}
		if !pending {
			return
		}
		q.settlingCond.Wait()
	}
}

// KeepAnswer records answer with job, a job being handled, and returns once
// it is committed: if the process stops or dies before the job is settled,
// its next delivery (after the next Open, then) carries the answer in
// Job.Answer. It ends the job's scanning mark and its suspicion. See
// broker.AnswerKeeper.
func (q *Broker) KeepAnswer(ctx context.Context, job broker.Job, answer psengine.Analysis) error {
	data, err := json.Marshal(answer)
	if err != nil {
		return fmt.Errorf("localq: keeping the answer of job %q: %w", job.ID, err)
	}
	seq, err := q.update(ctx, job.ID, "keeping the answer of", func(tx *bolt.Tx, key []byte) error {
		if err := tx.Bucket(bucketAnswers).Put(key, data); err != nil {
			return err
		}
		return tx.Bucket(bucketMarks).Delete(key)
	})
	if err != nil {
		return err
	}
	q.mu.Lock()
	delete(q.scanning, job.ID)
	q.mu.Unlock()
	q.q.Update(job.ID, func(e *jobq.Entry[broker.Job]) {
		if e.Seq == seq {
			e.Job.Answer, e.Job.Suspect = &answer, false
		}
	})
	q.q.Lift(job.ID) // its answer is kept: the others may run beside it
	return nil
}

// update runs write, with the store key of pending job id, in a commit,
// and returns once it is committed, with the job's sequence number.
func (q *Broker) update(ctx context.Context, id, what string, write func(tx *bolt.Tx, key []byte) error) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var seq uint64
	q.mu.Lock()
	if !q.q.Update(id, func(e *jobq.Entry[broker.Job]) { seq = e.Seq }) || q.released {
		q.mu.Unlock()
		return 0, fmt.Errorf("localq: %s job %q: the job is not pending", what, id)
	}
	q.mu.Unlock()
	key := seqKey(seq)
	ok, err := q.write(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketJobs).Get(key) == nil {
			return errors.New("the job was settled meanwhile")
		}
		return write(tx, key)
	})
	if !ok {
		err = psengine.ErrClosed
	}
	if err != nil {
		return 0, fmt.Errorf("localq: %s job %q: %w", what, id, err)
	}
	return seq, nil
}

// Close stops intake: Submit answers psengine.ErrClosed, while recorded
// jobs and redeliveries are still handed to consumers; once none is left,
// Consume returns nil. It does not close the file (see Release). Close is
// idempotent.
func (q *Broker) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.q.Close()
}

// Drain waits until no job is queued, running or waiting for redelivery,
// or ctx ends (then it returns ctx's error).
func (q *Broker) Drain(ctx context.Context) error { return q.q.Drain(ctx) }

// Abandon closes the broker and stops delivering: the jobs not yet handed
// to a consumer (queued, or waiting for a redelivery) are returned and stay
// recorded for the next Open, as do the running jobs handed back. Consume
// returns nil once the running jobs are settled.
func (q *Broker) Abandon() []broker.Job {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	es := q.q.Abandon()
	slices.SortFunc(es, func(a, b *jobq.Entry[broker.Job]) int { return cmp.Compare(a.Seq, b.Seq) })
	jobs := make([]broker.Job, 0, len(es))
	for _, e := range es {
		jobs = append(jobs, entryJob(e))
	}
	return jobs
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
	q.mu.Unlock()
	q.q.Abandon()
	q.ops.Wait()
	return q.db.Close()
}

// Len returns the number of jobs pending in this process: recorded and
// not settled (queued, running or waiting for a redelivery). Right after
// Open, it is the number of jobs resumed.
func (q *Broker) Len() int { return q.q.Len() }

// Recorded returns the jobs the store holds and no consumer settled, in
// order of arrival: what the next Open delivers if this process stops now.
func (q *Broker) Recorded(ctx context.Context) ([]broker.Job, error) {
	var jobs []broker.Job
	err := q.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketJobs).ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if s, err := readJob(tx, k, v); err == nil {
				jobs = append(jobs, s.job)
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
// Config.DeadLetters), oldest first; see broker.DeadLetterStore. Their
// Err carries the message of the error the job was given up with.
func (q *Broker) DeadLetters(ctx context.Context) ([]broker.DeadLetter, error) {
	var out []broker.DeadLetter
	err := q.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDead).ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			d, err := decodeDead(v)
			if err != nil {
				q.log.WarnContext(ctx, "localq: unreadable dead letter", "key", fmt.Sprintf("%x", k), "err", err)
				return nil
			}
			out = append(out, d)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("localq: %w", err)
	}
	return out, nil
}

func decodeDead(v []byte) (broker.DeadLetter, error) {
	var d deadRecord
	if err := json.Unmarshal(v, &d); err != nil {
		return broker.DeadLetter{}, err
	}
	s, err := decodeJob(bytes.TrimSpace(d.Job))
	if err != nil {
		return broker.DeadLetter{}, err
	}
	return broker.DeadLetter{Job: s.job, Err: errors.New(d.Err), At: d.At}, nil
}

// findDead returns the store key of the newest dead letter of job id.
func findDead(tx *bolt.Tx, id string) (key []byte, d broker.DeadLetter, ok bool) {
	c := tx.Bucket(bucketDead).Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		if got, err := decodeDead(v); err == nil && got.Job.ID == id {
			return slices.Clone(k), got, true
		}
	}
	return nil, broker.DeadLetter{}, false
}

// Requeue records the job of the dead letter of job id again, as new
// (attempt 1, the answer it kept if any), and queues it; see
// broker.DeadLetterStore. A job whose bounty expired is not requeued.
func (q *Broker) Requeue(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q.mu.Lock()
	if q.closed || q.released {
		q.mu.Unlock()
		return psengine.ErrClosed
	}
	if q.q.Pending(id) {
		q.mu.Unlock()
		return fmt.Errorf("localq: requeue %q: a job with that id is pending", id)
	}
	q.seq++
	seq := q.seq
	q.ops.Add(1)
	q.mu.Unlock()
	defer q.ops.Done()
	var job broker.Job
	err := q.commit(func(tx *bolt.Tx) error {
		k, d, ok := findDead(tx, id)
		if !ok {
			return fmt.Errorf("%w: %q", broker.ErrNoDeadLetter, id)
		}
		job = d.Job
		if job.Bounty.Expired(q.cfg.now()) {
			return fmt.Errorf("localq: requeue %q: its bounty expired at %s", id, job.Bounty.Expiration.Format(time.RFC3339))
		}
		job.Attempt, job.Final, job.Suspect = 1, "", false
		if err := tx.Bucket(bucketDead).Delete(k); err != nil {
			return err
		}
		return putJob(tx, seqKey(seq), stored{job: job})
	})
	if err != nil {
		return err
	}
	q.mu.Lock()
	q.deadCount--
	q.mu.Unlock()
	q.q.Restore([]*jobq.Entry[broker.Job]{{ID: job.ID, Seq: seq, Attempt: 1, Job: job}})
	return nil
}

// Drop forgets the dead letter of job id; see broker.DeadLetterStore.
func (q *Broker) Drop(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ok, err := q.write(func(tx *bolt.Tx) error {
		k, _, ok := findDead(tx, id)
		if !ok {
			return fmt.Errorf("%w: %q", broker.ErrNoDeadLetter, id)
		}
		return tx.Bucket(bucketDead).Delete(k)
	})
	if !ok {
		return psengine.ErrClosed
	}
	if err != nil {
		return err
	}
	q.mu.Lock()
	q.deadCount--
	q.mu.Unlock()
	return nil
}
