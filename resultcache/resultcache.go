// Package resultcache is a durable psengine.ResultCache: the scanner's
// analyses kept in a bbolt file, normally in the engine's state directory
// (envdirs.Dirs.State) beside the intake store, STATE/results.db, so that
// a re-run over the same files, or a bounty for a file already seen, is
// answered without a scan.
//
// # Promises
//
//   - Bounded: the records (analyses, with their keys) take at most
//     Config.MaxBytes (default DefaultMaxBytes, 64 MiB); past it the
//     oldest records, by the time they were put, are evicted first. The
//     file itself is larger than the records by bbolt's page overhead (up
//     to about twice), and keeps its size once grown (bbolt reuses its free
//     pages). A record larger than MaxRecord is not kept.
//   - One generation: the cache holds the analyses of the definitions the
//     engine serves (psengine.CacheKey.Generation). Retain with another
//     generation (the engine calls it at start and after each update)
//     drops every record of the others, and Puts of another generation
//     than the retained one are dropped: a definitions update invalidates
//     the cache, and an old generation never takes room.
//   - Quick: Get reads the file (a memory map) in a read transaction; Put
//     queues the record and returns. Queued records are written together
//     (one commit, synced, at most Config.FlushDelay after the first) by a
//     goroutine of the cache, and Get finds them while they wait.
//   - Crash-safe: bbolt's commits are atomic and synced, so a process
//     killed at any moment (kill -9 included) leaves a usable cache with
//     every record committed before it; the records still queued (at most
//     FlushDelay's worth) are lost, which costs their scans again, nothing
//     else. A file bbolt cannot read (not a bbolt file, a checksum error)
//     is replaced by an empty cache, with a warning.
//   - Failures are misses: a record that cannot be read or decoded is a
//     miss (logged), a write that fails drops its records (logged).
//
// One process at a time has the file open: Open waits Config.LockTimeout
// for another, then fails with ErrLocked (the CLI then runs without a
// cache, with a warning).
package resultcache

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
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

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/polyswarm/psengine"
)

// DefaultFile is the cache's file name in the engine's state directory.
const DefaultFile = "results.db"

// Defaults of Config, and the largest record kept.
const (
	DefaultMaxBytes    = 64 << 20
	DefaultLockTimeout = 100 * time.Millisecond
	DefaultFlushDelay  = 50 * time.Millisecond
	// MaxRecord bounds one record (an analysis as JSON, with its key):
	// an answer PolySwarm takes is at most psengine.MaxAnswerSize.
	MaxRecord = 4 * psengine.MaxAnswerSize
	// maxQueued bounds the records waiting for their commit; Puts beyond
	// are dropped.
	maxQueued = 8192
)

// ErrLocked is returned by Open when another process has the cache open.
var ErrLocked = errors.New("resultcache: the cache is open in another process")

// Config configures a Cache. The zero value is usable.
type Config struct {
	// MaxBytes bounds the records kept (default DefaultMaxBytes); the
	// oldest are evicted first.
	MaxBytes int64
	// LockTimeout is how long Open waits for another process to close
	// the file (default DefaultLockTimeout), then fails with ErrLocked.
	LockTimeout time.Duration
	// FlushDelay is how long a Put may wait to be committed with the Puts
	// that follow it (default DefaultFlushDelay).
	FlushDelay time.Duration
	// Logger receives the cache's warnings (default: discard).
	Logger *slog.Logger
}

// Bucket and meta key names.
var (
	bucketMeta    = []byte("meta")
	bucketKeys    = []byte("keys")    // lookup key (32 bytes) -> sequence number
	bucketRecords = []byte("records") // sequence number (8 bytes, big-endian) -> record
	metaFormat    = []byte("format")
	metaGen       = []byte("generation")
	metaBytes     = []byte("bytes")
	metaCount     = []byte("count")
)

// format is the version of the file's layout and records: a file of
// another is emptied at Open.
const format = "2"

// Cache is a psengine.ResultCache kept in a bbolt file. Safe for
// concurrent use; Close it when done.
type Cache struct {
	cfg  Config
	log  *slog.Logger
	db   *bolt.DB
	path string

	mu         sync.Mutex
	generation string                // retained
	queued     map[lookupKey]*queued // waiting for their commit, by key
	queue      []*queued             // the same, in Put order
	closed     bool                  // Close began: no more Puts
	kick       chan struct{}         // the writer has work
	stop       chan struct{}         // closed by Close
	writerDone chan struct{}         // closed when the writer returned
	stats      Stats                 // as of the last commit
	writes     sync.WaitGroup        // Retain's writes under way
	commitMu   sync.Mutex            // one commit at a time: Flush waits for the writer's
}

// lookupKey is a psengine.CacheKey, hashed.
type lookupKey [sha256.Size]byte

// queued is a record waiting for its commit.
type queued struct {
	key        lookupKey
	generation string
	record     []byte
}

// Stats describes what the cache holds.
type Stats struct {
	Generation string // the generation retained
	Records    int    // committed records
	Bytes      int64  // their size, keys included
}

var _ psengine.ResultCache = (*Cache)(nil)

// Open opens (creating it and its directory when missing) the cache at
// path. It fails with ErrLocked when another process has it open for
// longer than Config.LockTimeout. A file bbolt cannot read, or of another
// layout, is replaced by an empty cache, with a warning.
func Open(path string, cfg Config) (*Cache, error) {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = DefaultLockTimeout
	}
	if cfg.FlushDelay <= 0 {
		cfg.FlushDelay = DefaultFlushDelay
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("resultcache: %w", err)
	}
	db, err := openDB(path, cfg)
	if err != nil {
		return nil, err
	}
	c := &Cache{cfg: cfg, log: cfg.Logger, db: db, path: path,
		queued: map[lookupKey]*queued{}, kick: make(chan struct{}, 1),
		stop: make(chan struct{}), writerDone: make(chan struct{})}
	if err := c.load(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("resultcache: reading %s: %w", path, err)
	}
	go c.writer()
	return c, nil
}

// openDB opens the bbolt file, replacing one bbolt cannot read.
func openDB(path string, cfg Config) (*bolt.DB, error) {
	// The free list is written with each commit (bbolt's default), not
	// rebuilt at Open: a short command (analyze FILE) opens the cache
	// without reading all of it.
	opts := &bolt.Options{Timeout: cfg.LockTimeout, FreelistType: bolt.FreelistMapType}
	db, err := bolt.Open(path, 0o600, opts)
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum),
		errors.Is(err, bolterrors.ErrVersionMismatch), errors.Is(err, bolterrors.ErrInvalidMapping):
		cfg.Logger.Warn("resultcache: the cache file is unreadable: starting an empty cache", "path", path, "err", err)
		if rerr := os.Remove(path); rerr != nil {
			return nil, fmt.Errorf("resultcache: replacing the unreadable %s: %w", path, rerr)
		}
		db, err = bolt.Open(path, 0o600, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("resultcache: opening %s: %w", path, err)
	}
	return db, nil
}

// load makes the buckets and reads the meta: the retained generation and
// the counts. A file of another layout is emptied.
func (c *Cache) load() error {
	read := func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil || string(meta.Get(metaFormat)) != format {
			return errNoMeta
		}
		c.stats = Stats{Generation: string(meta.Get(metaGen)), Records: int(getUint(meta, metaCount)), Bytes: int64(getUint(meta, metaBytes))}
		c.generation = c.stats.Generation
		return nil
	}
	err := c.db.View(read) // a read: no commit to sync
	if !errors.Is(err, errNoMeta) {
		return err
	}
	return c.db.Update(func(tx *bolt.Tx) error { // a new file, or one of another layout
		if err := reset(tx, ""); err != nil {
			return err
		}
		return read(tx)
	})
}

var errNoMeta = errors.New("no meta of this layout")

// reset empties the cache in tx and makes gen the generation retained.
func reset(tx *bolt.Tx, gen string) error {
	for _, name := range [][]byte{bucketMeta, bucketKeys, bucketRecords} {
		if tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	if err := meta.Put(metaFormat, []byte(format)); err != nil {
		return err
	}
	if err := meta.Put(metaGen, []byte(gen)); err != nil {
		return err
	}
	if err := putUint(meta, metaCount, 0); err != nil {
		return err
	}
	return putUint(meta, metaBytes, 0)
}

func getUint(b *bolt.Bucket, k []byte) uint64 {
	if v := b.Get(k); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func putUint(b *bolt.Bucket, k []byte, n uint64) error {
	return b.Put(k, binary.BigEndian.AppendUint64(nil, n))
}

// keyOf hashes a psengine.CacheKey.
func keyOf(k psengine.CacheKey) lookupKey {
	h := sha256.New()
	for _, s := range []string{k.Generation, string(k.Type), k.SHA256, k.Scanner} {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(s))))
		h.Write([]byte(s))
	}
	return lookupKey(h.Sum(nil))
}

// encode makes the record of a under key k: k, the time, and the
// analysis in its own JSON (psengine.Analysis.MarshalJSON: every field,
// Score and Likelihood included, which the bid stage reads).
func encode(k lookupKey, a psengine.Analysis, now time.Time) ([]byte, error) {
	data, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(k)+8+len(data))
	out = append(out, k[:]...)
	out = binary.BigEndian.AppendUint64(out, uint64(now.UnixNano()))
	return append(out, data...), nil
}

// decode reads a record stored under k.
func decode(k lookupKey, rec []byte) (psengine.Analysis, error) {
	if len(rec) < len(k)+8 || !bytes.Equal(rec[:len(k)], k[:]) {
		return psengine.Analysis{}, errors.New("the record is not the key's")
	}
	var a psengine.Analysis
	if err := json.Unmarshal(rec[len(k)+8:], &a); err != nil {
		return psengine.Analysis{}, err
	}
	return a, nil
}

// Get returns the analysis put under key, if the cache holds it.
func (c *Cache) Get(ctx context.Context, key psengine.CacheKey) (psengine.Analysis, bool) {
	k := keyOf(key)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return psengine.Analysis{}, false
	}
	if q, ok := c.queued[k]; ok {
		c.mu.Unlock()
		return c.decoded(ctx, k, q.record)
	}
	c.mu.Unlock()
	var a psengine.Analysis
	var found bool
	err := c.db.View(func(tx *bolt.Tx) error {
		keys, records := tx.Bucket(bucketKeys), tx.Bucket(bucketRecords)
		if keys == nil || records == nil {
			return nil
		}
		seq := keys.Get(k[:])
		if seq == nil {
			return nil
		}
		rec := records.Get(seq)
		if rec == nil {
			return nil
		}
		a, found = c.decoded(ctx, k, rec)
		return nil
	})
	if err != nil {
		if !errors.Is(err, bolterrors.ErrDatabaseNotOpen) { // closed meanwhile: a miss
			c.log.WarnContext(ctx, "resultcache: reading", "err", err)
		}
		return psengine.Analysis{}, false
	}
	return a, found
}

func (c *Cache) decoded(ctx context.Context, k lookupKey, rec []byte) (psengine.Analysis, bool) {
	a, err := decode(k, rec)
	if err != nil {
		c.log.WarnContext(ctx, "resultcache: an unreadable record is a miss", "key", fmt.Sprintf("%x", k[:8]), "err", err)
		return psengine.Analysis{}, false
	}
	return a, true
}

// Put queues a under key for the next commit, and returns. It drops it
// when key's generation is not the one retained, when the record would be
// larger than MaxRecord or MaxBytes, when too many records wait for their
// commit already, or after Close.
func (c *Cache) Put(ctx context.Context, key psengine.CacheKey, a psengine.Analysis) {
	k := keyOf(key)
	rec, err := encode(k, a, time.Now())
	if err != nil {
		c.log.WarnContext(ctx, "resultcache: an analysis that cannot be encoded is not kept", "err", err)
		return
	}
	if len(rec) > MaxRecord || int64(recordSize(rec)) > c.cfg.MaxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || key.Generation != c.generation || len(c.queue) >= maxQueued || c.queued[k] != nil {
		return
	}
	q := &queued{key: k, generation: key.Generation, record: rec}
	c.queued[k] = q
	c.queue = append(c.queue, q)
	if len(c.queue) == 1 {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// recordSize is what a record counts against MaxBytes: the record and
// its entry in the keys bucket.
func recordSize(rec []byte) int { return len(rec) + 8 + sha256.Size + 8 }

// Retain makes generation the one the cache holds: when it is another,
// every record is dropped (and every record queued for another). Puts
// under another generation are dropped from now on.
func (c *Cache) Retain(ctx context.Context, generation string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if generation == c.generation && generation != "" {
		c.mu.Unlock()
		return // held already: nothing to drop
	}
	c.generation = generation
	c.queue = slices.DeleteFunc(c.queue, func(q *queued) bool {
		if q.generation == generation {
			return false
		}
		delete(c.queued, q.key)
		return true
	})
	c.writes.Add(1)
	c.mu.Unlock()
	defer c.writes.Done()

	var dropped int
	err := c.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if string(meta.Get(metaGen)) == generation && generation != "" {
			return nil
		}
		dropped = int(getUint(meta, metaCount))
		return reset(tx, generation)
	})
	if err != nil {
		c.log.ErrorContext(ctx, "resultcache: dropping the records of other definitions", "err", err)
		return
	}
	c.mu.Lock()
	if dropped > 0 || c.stats.Generation != generation {
		c.stats = Stats{Generation: generation}
	}
	c.mu.Unlock()
	if dropped > 0 {
		c.log.InfoContext(ctx, "resultcache: the definitions changed: the results of the others were dropped", "dropped", dropped)
	}
}

// Stats returns what the cache holds (committed records).
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Path returns the file's path.
func (c *Cache) Path() string { return c.path }

// Flush commits the records queued now, and returns when they are.
func (c *Cache) Flush() error { return c.commit() }

// writer commits the queued records, FlushDelay after the first of each
// batch, until Close.
func (c *Cache) writer() {
	defer close(c.writerDone)
	delay := time.NewTimer(0)
	<-delay.C
	for {
		select {
		case <-c.kick:
		case <-c.stop:
			_ = c.commit()
			return
		}
		delay.Reset(c.cfg.FlushDelay)
		select {
		case <-delay.C:
		case <-c.stop:
			delay.Stop()
		}
		if err := c.commit(); err != nil {
			c.log.Error("resultcache: writing results", "err", err)
		}
	}
}

// commit writes the records queued now in one transaction, evicting the
// oldest past MaxBytes. Records of a generation that is not the file's
// (Retain ran since they were queued) are dropped.
func (c *Cache) commit() error {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	c.mu.Lock()
	batch := c.queue
	c.queue = nil
	c.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	var st Stats
	err := c.db.Update(func(tx *bolt.Tx) error {
		meta, keys, records := tx.Bucket(bucketMeta), tx.Bucket(bucketKeys), tx.Bucket(bucketRecords)
		gen := string(meta.Get(metaGen))
		count, size := int64(getUint(meta, metaCount)), int64(getUint(meta, metaBytes))
		for _, q := range batch {
			if q.generation != gen || keys.Get(q.key[:]) != nil {
				continue
			}
			n, err := records.NextSequence()
			if err != nil {
				return err
			}
			seq := binary.BigEndian.AppendUint64(nil, n)
			if err := records.Put(seq, q.record); err != nil {
				return err
			}
			if err := keys.Put(q.key[:], seq); err != nil {
				return err
			}
			count++
			size += int64(recordSize(q.record))
		}
		// Evict the oldest past the bound.
		cur := records.Cursor()
		for seq, rec := cur.First(); seq != nil && size > c.cfg.MaxBytes; seq, rec = cur.First() {
			if len(rec) >= sha256.Size {
				if err := keys.Delete(rec[:sha256.Size]); err != nil {
					return err
				}
			}
			size -= int64(recordSize(rec))
			count--
			if err := cur.Delete(); err != nil {
				return err
			}
		}
		count, size = max(count, 0), max(size, 0)
		if err := putUint(meta, metaCount, uint64(count)); err != nil {
			return err
		}
		if err := putUint(meta, metaBytes, uint64(size)); err != nil {
			return err
		}
		st = Stats{Generation: gen, Records: int(count), Bytes: size}
		return nil
	})
	c.mu.Lock()
	for _, q := range batch {
		if c.queued[q.key] == q {
			delete(c.queued, q.key)
		}
	}
	if err == nil && st.Generation == c.generation {
		c.stats = st
	}
	c.mu.Unlock()
	return err
}

// Close commits the queued records and closes the file. Later calls
// return nil; Get and Put after Close miss and drop.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	close(c.stop)
	<-c.writerDone
	c.writes.Wait()
	return c.db.Close()
}
