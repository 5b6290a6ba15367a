package natsq_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/natsq"
	"github.com/polyswarm/psengine/natsq/embedded"
	"github.com/polyswarm/psengine/psenginetest"
)

// worker is a broker on a connection of its own, as a worker process has;
// die closes the connection as the process's death would: no
// acknowledgement, no hand-back, no heartbeat from then on.
type worker struct {
	nc     *nats.Conn
	b      *natsq.Broker
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startWorker runs consumers on a new worker until it dies or the test
// ends; handler makes each consumer's handler from the worker's broker.
func startWorker(t *testing.T, srv *embedded.Server, cfg natsq.Config, consumers int, handler func(*natsq.Broker) broker.Handler) *worker {
	t.Helper()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	b, err := natsq.New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{nc: nc, b: b, cancel: cancel}
	h := handler(b)
	for range consumers {
		w.wg.Go(func() { _ = b.Consume(ctx, h) })
	}
	t.Cleanup(w.die)
	return w
}

func (w *worker) die() {
	w.nc.Close() // first: nothing it does afterwards reaches the server
	w.cancel()
	w.wg.Wait()
}

// delivered is what a handler saw of a job.
type delivered struct {
	ID      string
	Attempt int
	Suspect bool
	Final   bool
}

type deliveryLog struct {
	mu  sync.Mutex
	got []delivered
}

func (l *deliveryLog) add(j broker.Job) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, delivered{j.ID, j.Attempt, j.Suspect, j.Final != ""})
}

func (l *deliveryLog) of(id string) []delivered {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []delivered
	for _, d := range l.got {
		if d.ID == id {
			out = append(out, d)
		}
	}
	return out
}

// awaitDead waits for the dead letter of job id.
func awaitDead(t *testing.T, b *natsq.Broker, id string) broker.DeadLetter {
	t.Helper()
	var found broker.DeadLetter
	waitFor(t, "the dead letter of "+id, func() bool {
		dls, err := b.DeadLetters(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dls {
			if d.Job.ID == id {
				found = d
				return true
			}
		}
		return false
	})
	return found
}

// A job whose worker dies while scanning it (marked: broker.ScanMarker)
// comes back a suspect, its attempt unchanged; a job the worker only held
// comes back as it was. A suspect that kills its worker again counts a
// death, and after MaxAttempts deaths it gets its last call and is
// dead-lettered.
func TestAWorkerDeathIsChargedToTheJobItWasScanning(t *testing.T) {
	srv := startServer(t, "")
	cfg := fastConfig()
	cfg.Prefix = "deaths"
	cfg.AckWait = 500 * time.Millisecond
	cfg.Heartbeat = 100 * time.Millisecond
	cfg.MaxAttempts = 3
	sub := newBroker(t, connect(t, srv), cfg)
	for _, id := range []string{"poison", "bystander"} {
		if err := sub.Submit(context.Background(), job(id)); err != nil {
			t.Fatal(err)
		}
	}
	var log deliveryLog
	scanning := make(chan string, 10)
	// The first worker: the poison fails once (its attempt is raised), then
	// is scanned, while the bystander is only held; then the worker dies.
	first := startWorker(t, srv, cfg, 2, func(b *natsq.Broker) broker.Handler {
		return func(ctx context.Context, j broker.Job) error {
			log.add(j)
			if j.ID == "poison" {
				if j.Attempt == 1 {
					return errors.New("flaky fetch")
				}
				if err := b.MarkScanning(ctx, j); err != nil {
					t.Errorf("MarkScanning: %v", err)
				}
			}
			scanning <- j.ID
			<-ctx.Done()
			return ctx.Err()
		}
	})
	for range 2 {
		<-scanning
	}
	first.die()

	// Then workers with one consumer each (a job not taken is not held),
	// that die whenever they scan the poison, until it is given up on.
	deaths := 1
	for {
		if deaths > 2*cfg.MaxAttempts {
			t.Fatalf("the poison ended %d workers and was not given up on", deaths)
		}
		w := startWorker(t, srv, cfg, 1, func(b *natsq.Broker) broker.Handler {
			return func(ctx context.Context, j broker.Job) error {
				log.add(j)
				if j.ID != "poison" || j.Final != "" {
					return nil // answered (the poison's last call: unknown, without a scan)
				}
				if err := b.MarkScanning(ctx, j); err != nil {
					t.Errorf("MarkScanning: %v", err)
				}
				scanning <- j.ID
				<-ctx.Done()
				return ctx.Err()
			}
		})
		if deadLettered(t, sub, "poison", scanning) {
			w.die()
			break
		}
		w.die()
		deaths++
	}

	want := []delivered{
		{"poison", 1, false, false},
		{"poison", 2, false, false}, // scanned, the worker dies
		{"poison", 2, true, false},  // a suspect, no attempt counted; it dies alone: 1
		{"poison", 2, true, false},  // 2
		{"poison", 2, true, false},  // 3 = MaxAttempts
		{"poison", 2, false, true},  // the last call
	}
	if diff := cmp.Diff(want, log.of("poison")); diff != "" {
		t.Errorf("the poison's deliveries (-want +got):\n%s", diff)
	}
	if want := 1 + cfg.MaxAttempts; deaths != want {
		t.Errorf("the poison ended %d workers, want %d (once beside the bystander, then alone until given up on)", deaths, want)
	}
	if diff := cmp.Diff([]delivered{{"bystander", 1, false, false}, {"bystander", 1, false, false}}, log.of("bystander")); diff != "" {
		t.Errorf("the bystander's deliveries (-want +got):\n%s", diff)
	}
	d := awaitDead(t, sub, "poison")
	if !strings.Contains(d.Err.Error(), psengine.ErrWorkerDied.Error()) || !strings.Contains(d.Err.Error(), "3 times it was scanned alone") {
		t.Errorf("the poison's dead letter: %v", d.Err)
	}
	if d.Job.Attempt != 2 {
		t.Errorf("the poison's dead letter counts %d attempts, want 2", d.Job.Attempt)
	}
	if dls, _ := sub.DeadLetters(context.Background()); len(dls) != 1 {
		t.Errorf("%d dead letters, want the poison's only", len(dls))
	}
}

// deadLettered waits until the worker scans the poison (false) or the
// poison is dead-lettered (true).
func deadLettered(t *testing.T, b *natsq.Broker, id string, scanning <-chan string) bool {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(time.Minute)
	for {
		select {
		case <-scanning:
			return false
		case <-tick.C:
			dls, err := b.DeadLetters(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range dls {
				if d.Job.ID == id {
					return true
				}
			}
		case <-deadline:
			t.Fatal("neither scanned nor dead-lettered")
		}
	}
}

// A job whose workers keep going away before its scan starts (never
// marked) is not charged deaths, but it does not circle for ever: after
// twice MaxAttempts such lapses it gets its last call.
func TestAJobWhoseWorkersKeepGoingAwayGetsALastCall(t *testing.T) {
	srv := startServer(t, "")
	cfg := fastConfig()
	cfg.Prefix = "lapses"
	cfg.AckWait = 300 * time.Millisecond
	cfg.Heartbeat = 100 * time.Millisecond
	cfg.MaxAttempts = 2
	sub := newBroker(t, connect(t, srv), cfg)
	if err := sub.Submit(context.Background(), job("stranded")); err != nil {
		t.Fatal(err)
	}
	var log deliveryLog
	taken := make(chan struct{}, 1)
	for range 2 * cfg.MaxAttempts {
		w := startWorker(t, srv, cfg, 1, func(*natsq.Broker) broker.Handler {
			return func(ctx context.Context, j broker.Job) error {
				log.add(j)
				taken <- struct{}{}
				<-ctx.Done()
				return ctx.Err()
			}
		})
		<-taken
		w.die()
	}
	startWorker(t, srv, cfg, 1, func(*natsq.Broker) broker.Handler {
		return func(_ context.Context, j broker.Job) error { log.add(j); return nil }
	})
	d := awaitDead(t, sub, "stranded")
	want := []delivered{{"stranded", 1, false, false}, {"stranded", 1, false, false}, {"stranded", 1, false, false},
		{"stranded", 1, false, false}, {"stranded", 1, false, true}}
	if diff := cmp.Diff(want, log.of("stranded")); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
	if !strings.Contains(d.Err.Error(), "4 times before its scan started") {
		t.Errorf("dead letter: %v", d.Err)
	}
}

// Jobs a process holds are kept from other workers by heartbeats however
// long they are held, and handed back at once, no attempt counted, when
// its consumers stop.
func TestHeldJobsAreKeptAndHandedBack(t *testing.T) {
	srv := startServer(t, "")
	nc := connect(t, srv)
	cfg := fastConfig()
	cfg.Prefix = "held"
	// Twenty heartbeats per AckWait: a loaded machine (the race detector,
	// CPU burners, other tests) may stall several in a row.
	cfg.AckWait = 2 * time.Second
	cfg.Heartbeat = 100 * time.Millisecond
	a := newBroker(t, nc, cfg)
	for _, id := range []string{"first", "second", "third"} {
		if err := a.Submit(context.Background(), job(id)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	calls := map[string][]string{}
	record := func(who string) broker.Handler {
		return func(ctx context.Context, j broker.Job) error {
			mu.Lock()
			calls[j.ID] = append(calls[j.ID], fmt.Sprintf("%s@%d", who, j.Attempt))
			mu.Unlock()
			if who == "a" {
				<-ctx.Done() // a scan that lasts until the consumer stops
				return ctx.Err()
			}
			return nil
		}
	}
	ctxA, cancelA := context.WithCancel(context.Background())
	var consumersA sync.WaitGroup
	for range 2 {
		consumersA.Go(func() { _ = a.Consume(ctxA, record("a")) })
	}
	waitFor(t, "A to hold two jobs", func() bool { return ackPending(t, nc, "held") == 2 })
	// An idle worker joins: while A's jobs outlive AckWait twice, it gets
	// only the third.
	b := newBroker(t, connect(t, srv), cfg)
	consumeInBackground(t, b, record("b"))
	<-time.After(2 * cfg.AckWait)
	mu.Lock()
	if diff := cmp.Diff(map[string][]string{"first": {"a@1"}, "second": {"a@1"}, "third": {"b@1"}}, calls); diff != "" {
		t.Errorf("while A holds its jobs (-want +got):\n%s", diff)
	}
	mu.Unlock()
	cancelA() // both go back to the queue at once
	consumersA.Wait()
	waitFor(t, "B to take both", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(calls["first"]) == 2 && len(calls["second"]) == 2
	})
	mu.Lock()
	defer mu.Unlock()
	want := map[string][]string{"first": {"a@1", "b@1"}, "second": {"a@1", "b@1"}, "third": {"b@1"}}
	if diff := cmp.Diff(want, calls); diff != "" {
		t.Errorf("handler calls (-want +got):\n%s", diff)
	}
}

// The consumers of one process share one inbox and one pull request: an
// engine's WithInFlight consumers (256 by default) wait at the server as
// one request, and every job is handled once.
func TestConsumersOfAProcessShareOnePullRequest(t *testing.T) {
	srv := startServer(t, "")
	nc := connect(t, srv)
	cfg := fastConfig()
	cfg.Prefix = "shared"
	b := newBroker(t, nc, cfg)
	var mu sync.Mutex
	seen := map[string]int{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	const consumers, jobs = 256, 600
	for range consumers {
		wg.Go(func() {
			_ = b.Consume(ctx, func(_ context.Context, j broker.Job) error {
				mu.Lock()
				seen[j.ID]++
				mu.Unlock()
				return nil
			})
		})
	}
	defer func() { cancel(); wg.Wait() }()
	waitFor(t, "the consumers' request at the server", func() bool { return consumerInfo(t, nc, "shared").NumWaiting == 1 })
	for i := range jobs {
		if err := b.Submit(context.Background(), job(fmt.Sprint("job-", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every job", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == jobs })
	waitFor(t, "the consumers idle again", func() bool {
		info := consumerInfo(t, nc, "shared")
		return info.NumAckPending == 0 && info.NumWaiting == 1
	})
	mu.Lock()
	defer mu.Unlock()
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s handled %d times", id, n)
		}
	}
}

// A dead letter keeps the answer its job kept; requeued, the job comes back
// as new (attempt 1) with that answer, to be delivered without a scan.
func TestRequeueKeepsTheAnswer(t *testing.T) {
	nc := connect(t, startServer(t, ""))
	cfg := fastConfig()
	cfg.Prefix = "requeue"
	b := newBroker(t, nc, cfg)
	if err := b.Submit(context.Background(), job("kept")); err != nil {
		t.Fatal(err)
	}
	kept := psengine.Analysis{Verdict: psengine.Malicious, Confidence: 0.75, Bid: 123456789,
		Metadata: psengine.Metadata{MalwareFamily: "Test.Kept"}}
	var log deliveryLog
	answers := make(chan *psengine.Analysis, 4)
	requeued := make(chan struct{})
	consumeInBackground(t, b, func(ctx context.Context, j broker.Job) error {
		log.add(j)
		answers <- j.Answer
		select {
		case <-requeued:
			return nil
		default:
		}
		if err := b.KeepAnswer(ctx, j, kept); err != nil {
			t.Errorf("KeepAnswer: %v", err)
		}
		return psengine.Permanent(errors.New("the receiver refuses it for now"))
	})
	d := awaitDead(t, b, "kept")
	if d.Job.Answer == nil {
		t.Fatal("the dead letter has no answer, want the kept one")
	}
	if diff := cmp.Diff(kept, *d.Job.Answer, psenginetest.AnalysisOptions); diff != "" {
		t.Errorf("the dead letter's answer (-kept +got):\n%s", diff)
	}
	close(requeued)
	if err := b.Requeue(context.Background(), "kept"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the requeued delivery", func() bool { return len(log.of("kept")) == 2 })
	<-answers
	if a := <-answers; a == nil {
		t.Error("the requeued job carries no answer")
	} else if diff := cmp.Diff(kept, *a, psenginetest.AnalysisOptions); diff != "" {
		t.Errorf("the requeued job's answer (-kept +got):\n%s", diff)
	}
	if diff := cmp.Diff([]delivered{{"kept", 1, false, false}, {"kept", 1, false, false}}, log.of("kept")); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
	waitFor(t, "the requeued job acknowledged", func() bool { return queued(t, nc, "requeue") == 0 })
	if dls, err := b.DeadLetters(context.Background()); err != nil || len(dls) != 0 {
		t.Errorf("dead letters after the requeue: %v (%v), want none", dls, err)
	}
	if err := b.Requeue(context.Background(), "kept"); !errors.Is(err, broker.ErrNoDeadLetter) {
		t.Errorf("a second requeue: %v, want ErrNoDeadLetter", err)
	}
}

// A settled job leaves no record: its kept answer is purged from the state
// bucket with the acknowledgement, and the purge's own marker expires
// (a per-message TTL) rather than staying for KeyTTL.
func TestASettledJobLeavesNoRecord(t *testing.T) {
	nc := connect(t, startServer(t, ""))
	cfg := fastConfig()
	cfg.Prefix = "records"
	b := newBroker(t, nc, cfg)
	if err := b.Submit(context.Background(), job("answered")); err != nil {
		t.Fatal(err)
	}
	answer := psengine.Analysis{Verdict: psengine.Benign}
	consumeInBackground(t, b, func(ctx context.Context, j broker.Job) error {
		return b.KeepAnswer(ctx, j, answer)
	})
	waitFor(t, "the acknowledgement", func() bool { return queued(t, nc, "records") == 0 })
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(context.Background(), "records_state")
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), "KV_records_state")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the record purged", func() bool {
		_, err := kv.Get(context.Background(), "j.1")
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
	m, err := st.GetLastMsgForSubject(context.Background(), "$KV.records_state.j.1")
	if err != nil {
		t.Fatal(err)
	}
	if ttl := m.Header.Get(jetstream.MsgTTLHeader); ttl == "" {
		t.Errorf("the purge marker has no TTL: headers %v", m.Header)
	}
}

// A Submit that recorded its job's content key and then failed before the
// job was published (its process died, the publish timed out) can be
// retried: the key taken by that very job ID is not a duplicate. Another
// job ID with that key is.
func TestSubmitRetriedAfterItsKeyWasRecorded(t *testing.T) {
	nc := connect(t, startServer(t, ""))
	cfg := fastConfig()
	cfg.Prefix = "retry"
	b := newBroker(t, nc, cfg)
	bounty := psenginetest.Bounty([]byte("retried"), psenginetest.WithID("4242"))
	j, err := broker.NewJob("delivery-1", bounty, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// What the first Submit left: the key, no job.
	js, _ := jetstream.New(nc)
	keys, err := js.KeyValue(context.Background(), "retry_keys")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(j.Key))
	if _, err := keys.Create(context.Background(), hex.EncodeToString(sum[:16]), []byte(j.ID)); err != nil {
		t.Fatal(err)
	}
	if err := b.Submit(context.Background(), j); err != nil {
		t.Fatalf("the retried Submit: %v, want nil", err)
	}
	if err := b.Submit(context.Background(), j); !errors.Is(err, psengine.ErrDuplicate) {
		t.Errorf("the same job again: %v, want ErrDuplicate", err)
	}
	other := j
	other.ID = "delivery-2"
	if err := b.Submit(context.Background(), other); !errors.Is(err, psengine.ErrDuplicate) {
		t.Errorf("the same bounty under another job ID: %v, want ErrDuplicate", err)
	}
	if n := queued(t, nc, "retry"); n != 1 {
		t.Errorf("%d jobs queued, want 1", n)
	}
}
