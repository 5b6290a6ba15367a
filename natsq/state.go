package natsq

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/polyswarm/psengine"
)

// What a job's deliveries mean, and how this package tells them apart.
//
// The server counts every delivery of a message (its NumDelivered): after
// a failure, after our own hand-back, and after an AckWait that lapsed
// because the worker holding the message died (or lost its connection).
// Only failures are attempts; only a death while the job was being scanned
// alone is its own. So a worker records, in the state bucket, every
// delivery it ends without an acknowledgement before it ends it: a
// failure (the attempt raised, or the last call given), a hand-back. Any
// delivery the record does not account for lapsed: its holder died.
//
// Whether the lapsed delivery was being scanned is in the scan marks: each
// broker instance (a worker process) keeps one key in the state bucket
// listing the deliveries it is scanning now (broker.ScanMarker: the
// engine marks a job just before its scan, the mark is written before the
// scan starts, and it ends when the answer is kept). A lapsed delivery
// found marked was scanning when its process died: the job becomes a
// suspect (the engine handles it alone, no attempt counted), and a suspect
// found so again died alone, which counts a death; after MaxAttempts deaths
// the job gets its last call. A lapsed delivery not marked was only held
// (waiting for a fetch or a worker, or behind a suspect) when its process
// died: it comes back as it was. So a job that kills its worker is charged
// for it, and the jobs that worker held beside it are not. Lapses that are
// never marked (a death before the scan starts, workers that keep losing
// their connection, the process backend, which marks nothing because a
// child's death is its one job's) are counted too, and a job that reaches
// twice MaxAttempts of them gets its last call all the same: nothing
// circles for ever.

// jobState is what the state bucket records of a job message between its
// deliveries, under "j.SEQ" (its stream sequence). A message has no record
// until a delivery ends without an acknowledgement, or its answer is kept.
type jobState struct {
	ID string `json:"id"` // the job's (a record of another job is not this one's)
	// Explained is the last delivery accounted for: ended by a recorded
	// failure or hand-back, or judged at a later delivery. Deliveries
	// after it and before the current one lapsed.
	Explained int                `json:"explained"`
	Attempt   int                `json:"attempt,omitempty"` // of the next delivery (0: 1)
	Final     string             `json:"final,omitempty"`
	Suspect   bool               `json:"suspect,omitempty"`
	Deaths    int                `json:"deaths,omitempty"` // lapses while scanned as a suspect
	Lapses    int                `json:"lapses,omitempty"` // lapses while not scanning
	Answer    *psengine.Analysis `json:"answer,omitempty"` // its own JSON: every field
}

func stateKey(seq uint64) string { return "j." + strconv.FormatUint(seq, 10) }

// held is a delivery a consumer of this process handles: the job as
// handed to the handler and its record.
type held struct {
	d   *delivery
	job broker.Job

	mu    sync.Mutex
	st    jobState
	rev   uint64 // revision of the record in the state bucket; 0: none
	dirty bool   // st differs from the record
}

// errStale: the record changed under a write: another worker took the
// job since (this one's delivery lapsed while it still ran).
var errStale = errors.New("natsq: the job's record changed: another worker holds it now")

// loadState reads the record of h's message, if any.
func (b *Broker) loadState(ctx context.Context, h *held) error {
	kv, err := b.stateKV(ctx)
	if err != nil {
		return err
	}
	e, err := kv.Get(ctx, stateKey(h.d.seq))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("natsq: reading the record of job %s: %w", h.job.ID, err)
	}
	h.rev = e.Revision()
	var st jobState
	if err := json.Unmarshal(e.Value(), &st); err != nil || st.ID != h.job.ID {
		// Unreadable, or another job's (a stream made again): not ours.
		b.log.Warn("a job record that is not this job's: ignored", "job", h.job.ID, "seq", h.d.seq, "err", err)
		return nil
	}
	h.st = st
	return nil
}

// saveState writes h's record, if it changed, as one more version of the
// one read (errStale if another worker wrote meanwhile).
func (b *Broker) saveState(ctx context.Context, h *held) error {
	if !h.dirty {
		return nil
	}
	kv, err := b.stateKV(ctx)
	if err != nil {
		return err
	}
	data, err := json.Marshal(h.st)
	if err != nil {
		return fmt.Errorf("natsq: encoding the record of job %s: %w", h.job.ID, err)
	}
	var rev uint64
	if h.rev == 0 {
		rev, err = kv.Create(ctx, stateKey(h.d.seq), data)
	} else {
		rev, err = kv.Update(ctx, stateKey(h.d.seq), data, h.rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("%w: job %s: %w", errStale, h.job.ID, err)
	}
	if err != nil {
		return fmt.Errorf("natsq: recording job %s: %w", h.job.ID, err)
	}
	h.rev, h.dirty = rev, false
	return nil
}

// dropState removes h's record once its job is settled: a purge, whose
// marker expires after a minute (on a server without per-message TTLs, at
// KeyTTL). A failure only leaves the record to KeyTTL.
func (b *Broker) dropState(ctx context.Context, h *held) {
	if h.rev == 0 {
		return
	}
	kv, err := b.stateKV(ctx)
	if err == nil {
		if err = kv.Purge(ctx, stateKey(h.d.seq), jetstream.PurgeTTL(purgeMarkerTTL)); err != nil {
			err = kv.Purge(ctx, stateKey(h.d.seq))
		}
	}
	if err != nil {
		b.log.Debug("removing a settled job's record failed; KeyTTL will", "job", h.job.ID, "err", err)
	}
	h.rev = 0
}

// purgeMarkerTTL is how long the state bucket keeps the marker of a record
// removed.
const purgeMarkerTTL = time.Minute

// judge accounts for the deliveries of h's message that lapsed since the
// last one recorded (see the top of this file), before delivery n is
// handed out; it logs what it concludes.
func (b *Broker) judge(ctx context.Context, h *held) {
	n := h.d.delivered
	lapsed := n - 1 - h.st.Explained
	if lapsed <= 0 {
		return
	}
	st := &h.st
	from := st.Explained + 1
	st.Explained, h.dirty = n-1, true
	log := b.log.With("job", h.job.ID, "bounty", h.job.Bounty.ID.String(), "lapsed", lapsed)
	if st.Answer != nil || st.Final != "" {
		return // answered already, or given up on: nothing to scan, nothing to charge
	}
	marked, err := b.wasScanning(ctx, h.d, from, n-1)
	if err != nil {
		log.Warn("reading the scan marks failed: the lapses are counted as not scanning", "err", err)
	}
	if marked {
		lapsed--
		if st.Suspect {
			st.Deaths++
		} else {
			st.Suspect = true
		}
	}
	st.Lapses += lapsed
	limit := b.cfg.MaxAttempts
	switch {
	case st.Deaths >= limit:
		st.Final = fmt.Sprintf("%v: it ended the process each of the %d times it was scanned alone", psengine.ErrWorkerDied, st.Deaths)
		st.Suspect = false
		log.Error("a job ended its worker every time it was scanned alone: giving up on it", "deaths", st.Deaths)
	case st.Lapses >= 2*limit:
		st.Final = fmt.Sprintf("%v: its worker died, stopped or lost its connection %d times before its scan started", psengine.ErrWorkerDied, st.Lapses)
		st.Suspect = false
		log.Error("a job whose workers keep going away: giving up on it", "lapses", st.Lapses)
	case marked:
		log.Warn("a worker died while scanning this job: it runs alone now", "deaths_alone", st.Deaths)
	default:
		log.Info("the worker holding this job went away before scanning it: delivered again as it was", "lapses", st.Lapses)
	}
}

// scanMarks is this broker instance's key of the state bucket listing the
// deliveries it is scanning now. MarkScanning publishes the whole list
// (a few pairs: one per scan in progress), in order, so the key's last
// value is the latest list; marks made together wait for their flushes
// side by side, not one after the other.
type scanMarks struct {
	key   string // "p.ID"
	mu    sync.Mutex
	scans map[uint64]int // stream sequence -> delivery
	wrote bool           // a list was published
}

func newScanMarks(id string) *scanMarks {
	return &scanMarks{key: "p." + id, scans: make(map[uint64]int)}
}

// markRecord is the value of a scanMarks key: [sequence, delivery] pairs.
type markRecord [][2]uint64

// add marks delivery d of the message seq scanning and returns once the
// server has the mark (see putMarks).
func (m *scanMarks) add(ctx context.Context, b *Broker, seq uint64, d int) error {
	m.mu.Lock()
	m.scans[seq] = d
	rec := make(markRecord, 0, len(m.scans))
	for s, d := range m.scans {
		rec = append(rec, [2]uint64{s, uint64(d)})
	}
	data, _ := json.Marshal(rec) // numbers only: cannot fail
	err := b.nc.Publish("$KV."+b.names.state+"."+m.key, data)
	m.wrote = true
	m.mu.Unlock()
	// The server has it once it answers a ping sent after it: it reads a
	// connection in order. The stream's own acknowledgement is not waited
	// for (a second round trip, through the stream, and each scan waits
	// for its mark): so the worker's death, however soon, cannot lose the
	// mark; only the server's own crash in the next instant could, and a
	// mark lost costs only the attribution of a death.
	if err == nil {
		err = b.nc.FlushWithContext(ctx)
	}
	if err != nil {
		return fmt.Errorf("natsq: recording the scans of this process: %w", err)
	}
	return nil
}

// remove ends the mark of the message seq. The bucket learns it with the
// next mark: until then a stale mark can only make a job whose delivery
// lapses afterwards, unanswered, a suspect (run alone, not charged).
func (m *scanMarks) remove(seq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.scans, seq)
}

// markView is the scan marks of every process as read from the bucket at
// one time; reads asked for together share one.
type markView struct {
	mu      sync.Mutex
	at      time.Time // when the latest read started
	marks   map[uint64][]int
	err     error
	loading chan struct{} // closed when the read under way is done
	started time.Time     // when the read under way started
}

// wasScanning tells whether a process marked one of the deliveries from..to
// of d's message scanning. The marks are read after d arrived: by then
// every process whose delivery lapsed had written its last.
func (b *Broker) wasScanning(ctx context.Context, d *delivery, from, to int) (bool, error) {
	marks, err := b.view.read(ctx, b, d.at)
	for _, n := range marks[d.seq] {
		if n >= from && n <= to {
			return true, nil
		}
	}
	return false, err
}

// read returns the marks read at or after since.
func (v *markView) read(ctx context.Context, b *Broker, since time.Time) (map[uint64][]int, error) {
	v.mu.Lock()
	for {
		if v.marks != nil && !v.at.Before(since) {
			defer v.mu.Unlock()
			return v.marks, v.err
		}
		if v.loading == nil || v.started.Before(since) {
			break
		}
		wait := v.loading
		v.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		v.mu.Lock()
	}
	done := make(chan struct{})
	start := time.Now()
	v.loading, v.started = done, start
	v.mu.Unlock()
	marks, err := b.readMarks(ctx)
	v.mu.Lock()
	if !start.Before(v.at) || v.marks == nil {
		v.marks, v.err, v.at = marks, err, start
	}
	if v.loading == done {
		v.loading = nil
	}
	v.mu.Unlock()
	close(done)
	return marks, err
}

// readMarks reads every process's scan marks.
func (b *Broker) readMarks(ctx context.Context) (map[uint64][]int, error) {
	kv, err := b.stateKV(ctx)
	if err != nil {
		return map[uint64][]int{}, err
	}
	lister, err := kv.ListKeysFiltered(ctx, "p.>")
	if err != nil {
		return map[uint64][]int{}, fmt.Errorf("natsq: listing scan marks: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	marks := map[uint64][]int{}
	var errs []error
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var rec markRecord
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			continue // not ours to judge by
		}
		for _, p := range rec {
			marks[p[0]] = append(marks[p[0]], int(p[1]))
		}
	}
	return marks, errors.Join(errs...)
}

// MarkScanning records that the scan of job, which a consumer of this
// broker is handling, starts in this process, and returns once the state
// bucket holds the mark: should the scan end the process, the job's next
// delivery is a suspect (see broker.ScanMarker). Marks made together
// share one write.
func (b *Broker) MarkScanning(ctx context.Context, job broker.Job) error {
	v, ok := b.handling.Load(job.ID)
	if !ok {
		return fmt.Errorf("natsq: marking the scan of job %s: this process is not handling it", job.ID)
	}
	h := v.(*held)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return b.marks.add(ctx, b, h.d.seq, h.d.delivered)
}

// KeepAnswer keeps answer for the redeliveries of job, which a consumer of
// this broker must be handling: should its delivery not finish (the worker
// stops or dies), the job comes back with Job.Answer set, to be delivered
// again without a scan. It ends the job's scan mark and its suspicion. The
// answer is dropped when the job is acknowledged or dead-lettered, or
// after Config.KeyTTL. See broker.AnswerKeeper.
func (b *Broker) KeepAnswer(ctx context.Context, job broker.Job, answer psengine.Analysis) error {
	v, ok := b.handling.Load(job.ID)
	if !ok {
		return fmt.Errorf("natsq: keep the answer of job %s: this process is not handling it", job.ID)
	}
	h := v.(*held)
	h.mu.Lock()
	defer h.mu.Unlock()
	prev := h.st
	h.st.Answer, h.st.Suspect, h.dirty = &answer, false, true
	if err := b.saveState(ctx, h); err != nil {
		h.st = prev
		return fmt.Errorf("natsq: keep the answer of job %s: %w", job.ID, err)
	}
	b.marks.remove(h.d.seq)
	return nil
}

// kvKey turns an ID or a content key into a KV key (any text: hashed).
func kvKey(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// oneLine flattens an error message to one line, as headers need.
func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
