package natsq_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
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

func job(id string) broker.Job {
	return broker.Job{ID: id, Bounty: psenginetest.Bounty([]byte(id), psenginetest.WithID(id))}
}

// queued returns the number of messages left in the job stream.
func queued(t testing.TB, nc *nats.Conn, prefix string) uint64 {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), prefix+"_jobs")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// consumeInBackground runs b.Consume(h) until the test ends.
func consumeInBackground(t *testing.T, b *natsq.Broker, h broker.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = b.Consume(ctx, h)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func TestDeadLetterRecordsReasonAndDeliveries(t *testing.T) {
	nc := connect(t, startServer(t, ""))
	cfg := fastConfig()
	cfg.Prefix = "dl"
	var mu sync.Mutex
	var reported []broker.DeadLetter
	cfg.OnDeadLetter = func(d broker.DeadLetter) { mu.Lock(); reported = append(reported, d); mu.Unlock() }
	b := newBroker(t, nc, cfg)
	for _, id := range []string{"poison", "flaky"} {
		if err := b.Submit(context.Background(), job(id)); err != nil {
			t.Fatal(err)
		}
	}
	consumeInBackground(t, b, func(_ context.Context, j broker.Job) error {
		if j.ID == "poison" {
			return psengine.Permanent(errors.New("cannot parse\nthis file"))
		}
		return fmt.Errorf("transient failure %d", j.Attempt)
	})
	var dls []broker.DeadLetter
	waitFor(t, "two dead letters", func() bool {
		var err error
		dls, err = b.DeadLetters(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return len(dls) == 2
	})
	got := map[string]natsq.DeadLetterError{}
	for _, d := range dls {
		var why *natsq.DeadLetterError
		if !errors.As(d.Err, &why) {
			t.Fatalf("dead letter %s: Err %T is not a *DeadLetterError", d.Job.ID, d.Err)
		}
		if d.Job.Attempt != why.Attempts {
			t.Errorf("dead letter %s: Job.Attempt %d, attempts %d", d.Job.ID, d.Job.Attempt, why.Attempts)
		}
		if d.At.IsZero() || time.Since(d.At) > time.Minute {
			t.Errorf("dead letter %s: At %v, want when it was given up on", d.Job.ID, d.At)
		}
		got[d.Job.ID] = *why
	}
	// flaky: three attempts, then a last call (which fails too: it is
	// dead-lettered all the same).
	want := map[string]natsq.DeadLetterError{
		"poison": {Reason: "cannot parse this file", Deliveries: 1, Attempts: 1, Permanent: true},
		"flaky":  {Reason: "gave up after 3 attempts: transient failure 3", Deliveries: 4, Attempts: 3},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dead letters (-want +got):\n%s", diff)
	}
	if !errors.Is(dls[0].Err, psengine.ErrPermanent) && !errors.Is(dls[1].Err, psengine.ErrPermanent) {
		t.Error("the permanent dead letter does not match psengine.ErrPermanent")
	}
	if n := queued(t, nc, "dl"); n != 0 {
		t.Errorf("%d messages left in the job stream after dead-lettering, want 0", n)
	}
	waitFor(t, "OnDeadLetter calls", func() bool { mu.Lock(); defer mu.Unlock(); return len(reported) == 2 })
}

func TestMalformedMessageIsDeadLettered(t *testing.T) {
	nc := connect(t, startServer(t, ""))
	cfg := fastConfig()
	cfg.Prefix = "junk"
	b := newBroker(t, nc, cfg)
	js, _ := jetstream.New(nc)
	msg := &nats.Msg{Subject: "junk.jobs", Data: []byte("not a job"), Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, "junk-1")
	if _, err := js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	consumeInBackground(t, b, func(context.Context, broker.Job) error { calls.Add(1); return nil })
	var dls []broker.DeadLetter
	waitFor(t, "the dead letter", func() bool { dls, _ = b.DeadLetters(context.Background()); return len(dls) == 1 })
	if dls[0].Job.ID != "junk-1" || !errors.Is(dls[0].Err, psengine.ErrPermanent) {
		t.Errorf("dead letter %+v: want job junk-1, permanent", dls[0])
	}
	if calls.Load() != 0 {
		t.Errorf("handler called %d times for a malformed message", calls.Load())
	}
}

// Heartbeats keep a scan longer than AckWait from being handed to another
// worker.
func TestHeartbeatKeepsALongScan(t *testing.T) {
	srv := startServer(t, "")
	cfg := fastConfig()
	cfg.Prefix = "long"
	cfg.AckWait = 500 * time.Millisecond
	cfg.Heartbeat = 150 * time.Millisecond
	nc := connect(t, srv)
	a := newBroker(t, nc, cfg)
	bk := newBroker(t, connect(t, srv), cfg)
	if err := a.Submit(context.Background(), job("long-scan")); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	var finished atomic.Bool
	scan := func(ctx context.Context, j broker.Job) error {
		calls.Add(1)
		// The scan itself: four times AckWait.
		select {
		case <-time.After(4 * cfg.AckWait):
		case <-ctx.Done():
			return ctx.Err()
		}
		finished.Store(true)
		return nil
	}
	consumeInBackground(t, a, scan)
	consumeInBackground(t, bk, scan)
	waitFor(t, "the scan to finish", finished.Load)
	waitFor(t, "the ack", func() bool { return queued(t, nc, "long") == 0 })
	if n := calls.Load(); n != 1 {
		t.Errorf("the long scan was started %d times, want 1", n)
	}
}

func TestQueuedJobsSurviveAServerRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := fastConfig()
	cfg.Prefix = "durable"
	func() {
		srv, err := embedded.Start(embedded.Options{StoreDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Shutdown()
		nc, err := srv.Connect()
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		b := newBroker(t, nc, cfg)
		for i := range 20 {
			if err := b.Submit(context.Background(), job(fmt.Sprintf("kept-%d", i))); err != nil {
				t.Fatal(err)
			}
		}
	}()

	nc := connect(t, startServer(t, dir))
	b := newBroker(t, nc, cfg) // provisioning again changes nothing queued
	if n := queued(t, nc, "durable"); n != 20 {
		t.Fatalf("%d jobs queued after the restart, want 20", n)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	consumeInBackground(t, b, func(_ context.Context, j broker.Job) error {
		mu.Lock()
		seen[j.ID]++
		mu.Unlock()
		return nil
	})
	waitFor(t, "all 20 jobs", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 20 })
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s handled %d times", id, n)
		}
	}
}

func TestSubmitErrors(t *testing.T) {
	srv := startServer(t, "")
	nc := connect(t, srv)
	cfg := fastConfig()
	cfg.Capacity = 2
	b := newBroker(t, nc, cfg)
	ctx := context.Background()
	for _, id := range []string{"one", "two"} {
		if err := b.Submit(ctx, job(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Submit(ctx, job("one")); !errors.Is(err, psengine.ErrDuplicate) {
		t.Errorf("a duplicate at capacity: %v, want ErrDuplicate", err)
	}
	if err := b.Submit(ctx, job("three")); !errors.Is(err, psengine.ErrQueueFull) {
		t.Errorf("beyond capacity: %v, want ErrQueueFull", err)
	}
	bad := job("bad")
	bad.ID = "bad\nid"
	if err := b.Submit(ctx, bad); !errors.Is(err, psengine.ErrMalformedBounty) {
		t.Errorf("a job id that cannot be a header: %v, want ErrMalformedBounty", err)
	}
	b.Close()
	if err := b.Submit(ctx, job("four")); !errors.Is(err, psengine.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
	if err := b.Consume(ctx, func(context.Context, broker.Job) error { return nil }); err != nil {
		t.Errorf("Consume after Close: %v, want nil", err)
	}

	unprovisioned, err := natsq.New(nc, natsq.Config{Prefix: "nothing-here"})
	if err != nil {
		t.Fatal(err)
	}
	if err := unprovisioned.Consume(ctx, func(context.Context, broker.Job) error { return nil }); !errors.Is(err, natsq.ErrNotProvisioned) {
		t.Errorf("Consume unprovisioned: %v, want ErrNotProvisioned", err)
	}
	if err := unprovisioned.Submit(ctx, job("x")); !errors.Is(err, natsq.ErrNotProvisioned) {
		t.Errorf("Submit unprovisioned: %v, want ErrNotProvisioned", err)
	}
	if _, err := natsq.New(nil, natsq.Config{}); !errors.Is(err, natsq.ErrBadConfig) {
		t.Errorf("New(nil): %v, want ErrBadConfig", err)
	}
}

// answerSink is a response_url that counts the answers it receives.
type answerSink struct {
	*httptest.Server
	mu      sync.Mutex
	answers []string
}

func newAnswerSink(t *testing.T) *answerSink {
	s := &answerSink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.answers = append(s.answers, string(body))
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *answerSink) count() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.answers) }

// loopbackAnswers lets workers answer to an answerSink, on loopback.
var loopbackAnswers = []natsq.WorkerOption{natsq.AllowPrivate()}

// serveWorker runs an engine worker with WorkerOptions(wopts...) on b
// until the test ends.
func serveWorker(t *testing.T, b *natsq.Broker, s psengine.Scanner, wopts []natsq.WorkerOption, opts ...psengine.Option) *psengine.Engine {
	t.Helper()
	opts = append(append(b.WorkerOptions(wopts...), psengine.WithBroker(b), psengine.WithWorkers(2)), opts...)
	e := psengine.New(s, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = e.Shutdown(context.Background())
	})
	return e
}

// A worker dies mid-scan: its bounty goes to another worker after AckWait
// and is answered once.
func TestWorkerKilledMidScan(t *testing.T) {
	srv := startServer(t, "")
	sink := newAnswerSink(t)
	cfg := fastConfig()
	cfg.Prefix = "killed"
	cfg.AckWait = 500 * time.Millisecond
	cfg.Heartbeat = 150 * time.Millisecond

	ncA, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	a := newBroker(t, ncA, cfg)
	bounty := psenginetest.Bounty(psenginetest.EICAR(), psenginetest.WithResponseURL(sink.URL+"/answer"),
		psenginetest.WithExpiration(time.Now().Add(time.Hour)))
	if err := a.Submit(context.Background(), broker.Job{ID: bounty.ID.String(), Bounty: bounty}); err != nil {
		t.Fatal(err)
	}
	// Worker A takes the bounty and hangs in its scan; then its process
	// dies: the connection drops with the job unacknowledged.
	started := make(chan broker.Job, 1)
	release := make(chan struct{})
	ctxA, cancelA := context.WithCancel(context.Background())
	doneA := make(chan struct{})
	go func() {
		defer close(doneA)
		_ = a.Consume(ctxA, func(_ context.Context, j broker.Job) error { started <- j; <-release; return errors.New("dead") })
	}()
	if j := <-started; j.Attempt != 1 {
		t.Errorf("worker A got attempt %d", j.Attempt)
	}
	ncA.Close()
	defer func() { close(release); cancelA(); <-doneA }()

	ncB := connect(t, srv)
	b := newBroker(t, ncB, cfg)
	var seen atomic.Int64
	serveWorker(t, b, engineScanner(), loopbackAnswers, psengine.OnSuccess(func(context.Context, psengine.Result) { seen.Add(1) }))
	waitFor(t, "the answer from worker B", func() bool { return sink.count() == 1 })
	waitFor(t, "worker B's ack", func() bool { return queued(t, ncB, "killed") == 0 })
	if n := sink.count(); n != 1 {
		t.Errorf("%d answers delivered, want 1", n)
	}
	if seen.Load() != 1 {
		t.Errorf("worker B answered %d times", seen.Load())
	}
}

// A worker dies after delivering the answer but before acknowledging the
// job: the redelivery finds the answered marker and is acknowledged without
// a second answer.
func TestWorkerKilledBetweenAnswerAndAck(t *testing.T) {
	srv := startServer(t, "")
	sink := newAnswerSink(t)
	cfg := fastConfig()
	cfg.Prefix = "halfdone"
	cfg.AckWait = 500 * time.Millisecond
	cfg.Heartbeat = 150 * time.Millisecond

	ncA, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer ncA.Close()
	a := newBroker(t, ncA, cfg)
	bounty := psenginetest.Bounty(psenginetest.EICAR(), psenginetest.WithResponseURL(sink.URL+"/answer"),
		psenginetest.WithExpiration(time.Now().Add(time.Hour)))
	if err := a.Submit(context.Background(), broker.Job{ID: bounty.ID.String(), Bounty: bounty}); err != nil {
		t.Fatal(err)
	}
	// The success hook runs after delivery and before the ack: the worker
	// dies there.
	serveWorker(t, a, engineScanner(), loopbackAnswers, psengine.OnSuccess(func(context.Context, psengine.Result) { ncA.Close() }))
	waitFor(t, "worker A's answer", func() bool { return sink.count() == 1 })

	ncB := connect(t, srv)
	b := newBroker(t, ncB, cfg)
	var scans atomic.Int64
	counting := psengine.ScannerFunc(func(ctx context.Context, env psengine.Env, art psengine.Artifact) (psengine.Analysis, error) {
		scans.Add(1)
		return engineScanner().Scan(ctx, env, art)
	})
	serveWorker(t, b, counting, loopbackAnswers)
	waitFor(t, "the redelivery to be acknowledged", func() bool { return queued(t, ncB, "halfdone") == 0 })
	if n := sink.count(); n != 1 {
		t.Errorf("%d answers delivered, want 1", n)
	}
	if n := scans.Load(); n != 0 {
		t.Errorf("worker B scanned the answered bounty %d times", n)
	}
}

// ackPending is how many jobs the workers hold.
func ackPending(t *testing.T, nc *nats.Conn, prefix string) int {
	return consumerInfo(t, nc, prefix).NumAckPending
}

func consumerInfo(t *testing.T, nc *nats.Conn, prefix string) *jetstream.ConsumerInfo {
	t.Helper()
	js, _ := jetstream.New(nc)
	c, err := js.Consumer(context.Background(), prefix+"_jobs", prefix+"_workers")
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// The same bounty submitted again under another job ID (a webhook delivery
// retried by its sender) is not answered twice at the same response URL.
func TestBountyAnsweredOncePerResponseURL(t *testing.T) {
	srv := startServer(t, "")
	sink := newAnswerSink(t)
	nc := connect(t, srv)
	cfg := fastConfig()
	cfg.Prefix = "resent"
	b := newBroker(t, nc, cfg)
	var scans atomic.Int64
	counting := psengine.ScannerFunc(func(ctx context.Context, env psengine.Env, art psengine.Artifact) (psengine.Analysis, error) {
		scans.Add(1)
		return engineScanner().Scan(ctx, env, art)
	})
	serveWorker(t, b, counting, loopbackAnswers)
	bounty := psenginetest.Bounty(psenginetest.EICAR(), psenginetest.WithResponseURL(sink.URL+"/answer"),
		psenginetest.WithExpiration(time.Now().Add(time.Hour)))
	if err := b.Submit(context.Background(), broker.Job{ID: "delivery-1", Bounty: bounty}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the answer", func() bool { return sink.count() == 1 })
	// The answered marker is written once the POST returned, before the
	// ack: the resent bounty comes after it, as a sender's retry does
	// (without a Key, the marker is the only guard; NewJob's Key guards
	// two submissions at once).
	waitFor(t, "the first job to be settled", func() bool { return queued(t, nc, "resent") == 0 && ackPending(t, nc, "resent") == 0 })
	if err := b.Submit(context.Background(), broker.Job{ID: "delivery-2", Bounty: bounty}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second job to be settled", func() bool { return queued(t, nc, "resent") == 0 && ackPending(t, nc, "resent") == 0 })
	if n := sink.count(); n != 1 {
		t.Errorf("%d answers, want 1", n)
	}
	if n := scans.Load(); n != 1 {
		t.Errorf("%d scans, want 1", n)
	}
}

func TestConsumeEndsWhenTheConnectionCloses(t *testing.T) {
	srv := startServer(t, "")
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	b := newBroker(t, nc, fastConfig())
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(context.Background(), func(context.Context, broker.Job) error { return nil })
	}()
	nc.Close()
	select {
	case err := <-done:
		if err == nil || !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
			t.Errorf("Consume returned %v, want a closed-connection error", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Consume did not return after the connection closed")
	}
}

// A second Provision of an unchanged configuration sends no update to the
// server (an update rewrites a stream's stored config, and nats-server
// 2.15.3 reads that config unlocked while another process creates a
// consumer: the race detector caught it in a worker and analyze starting
// together); a changed configuration is still applied.
func TestProvisionUpdatesOnlyWhatChanged(t *testing.T) {
	nc := connect(t, startServer(t, ""))
	cfg := fastConfig()
	cfg.Prefix = fmt.Sprintf("t%d", prefixes.Add(1))
	newBroker(t, nc, cfg)

	var updates atomic.Int64
	sub, err := nc.Subscribe("$JS.API.*.UPDATE.>", func(*nats.Msg) { updates.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	newBroker(t, nc, cfg)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := updates.Load(); n != 0 {
		t.Errorf("an unchanged Provision sent %d updates, want 0", n)
	}

	cfg.Capacity = 7
	newBroker(t, nc, cfg)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), cfg.Prefix+"_jobs")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxMsgs; got != 7 {
		t.Errorf("after a changed Capacity the stream holds MaxMsgs %d, want 7", got)
	}
	if updates.Load() == 0 {
		t.Error("a changed Capacity sent no update")
	}
}
