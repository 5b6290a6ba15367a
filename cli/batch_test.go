package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"iter"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine"
)

// fakeQueue is a backend whose workers behave as natsq's do: one job at a
// time each, in submission order, a job whose bounty expired before a
// worker reached it answered ErrExpired without a scan, and submissions
// beyond capacity refused with ErrQueueFull.
type fakeQueue struct {
	workers  int
	scan     time.Duration
	capacity int
	skew     time.Duration // the workers' clock is ahead by this much
	grace    time.Duration // how long Analyze waits past the latest expiration (default 30 s)

	mu        sync.Mutex
	jobs      []fakeJob
	queued    int // submitted, not yet answered
	maxQueued int
	refused   int
	expired   int
	answered  int
	windows   map[time.Duration]bool // expiration - submission, per submission
	expiries  map[time.Time]bool     // expirations submitted
	wake      chan struct{}
}

type fakeJob struct {
	b    psengine.Bounty
	done chan psengine.Result
}

func (q *fakeQueue) Flags(*flag.FlagSet) Connector {
	return func(ctx context.Context, log *slog.Logger) (Session, error) {
		q.wake = make(chan struct{}, 1)
		q.windows = map[time.Duration]bool{}
		q.expiries = map[time.Time]bool{}
		s := &queueSession{q: q, stop: make(chan struct{})}
		for range q.workers {
			s.wg.Add(1)
			go s.work()
		}
		return s, nil
	}
}

type queueSession struct {
	q    *fakeQueue
	stop chan struct{}
	wg   sync.WaitGroup
}

func (s *queueSession) Broker() broker.Broker            { return nil }
func (s *queueSession) WorkerOptions() []psengine.Option { return nil }
func (s *queueSession) Close() error {
	close(s.stop)
	s.wg.Wait()
	return nil
}

func (s *queueSession) work() {
	defer s.wg.Done()
	q := s.q
	for {
		q.mu.Lock()
		if len(q.jobs) == 0 {
			q.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-q.wake:
			}
			continue
		}
		j := q.jobs[0]
		q.jobs = q.jobs[1:]
		more := len(q.jobs) > 0
		q.mu.Unlock()
		if more { // let another idle worker take the next
			select {
			case q.wake <- struct{}{}:
			default:
			}
		}
		res := psengine.Result{Bounty: j.b}
		if now := time.Now().Add(q.skew); now.After(j.b.Expiration) {
			res.Err = fmt.Errorf("%w: at %v, %v late", psengine.ErrExpired, now, now.Sub(j.b.Expiration))
		} else {
			time.Sleep(q.scan)
			res.Answered, res.Analysis = true, psengine.Analysis{Verdict: psengine.Benign, Bid: 62500000000000000}
		}
		q.mu.Lock()
		q.queued--
		if res.Answered {
			q.answered++
		} else {
			q.expired++
		}
		q.mu.Unlock()
		j.done <- res
	}
}

func (s *queueSession) Analyze(ctx context.Context, reqs []Request) iter.Seq[psengine.Result] {
	q := s.q
	return func(yield func(psengine.Result) bool) {
		done := make([]chan psengine.Result, len(reqs))
		now := time.Now()
		var latest time.Time
		for i, r := range reqs {
			done[i] = make(chan psengine.Result, 1)
			q.mu.Lock()
			if q.capacity > 0 && q.queued >= q.capacity {
				q.refused++
				q.mu.Unlock()
				done[i] <- psengine.Result{Bounty: r.Bounty, Err: fmt.Errorf("%w: fake", psengine.ErrQueueFull)}
				continue
			}
			q.queued++
			q.maxQueued = max(q.maxQueued, q.queued)
			q.windows[r.Bounty.Expiration.Sub(now)] = true
			q.expiries[r.Bounty.Expiration] = true
			q.jobs = append(q.jobs, fakeJob{b: r.Bounty, done: done[i]})
			q.mu.Unlock()
			if r.Bounty.Expiration.After(latest) {
				latest = r.Bounty.Expiration
			}
			select {
			case q.wake <- struct{}{}:
			default:
			}
		}
		// As natsq: the wait ends a grace (30 s) after the latest
		// expiration.
		wctx := ctx
		if !latest.IsZero() {
			grace := q.grace
			if grace == 0 {
				grace = 30 * time.Second
			}
			var cancel context.CancelFunc
			wctx, cancel = context.WithDeadlineCause(ctx, latest.Add(grace), errNoAnswer)
			defer cancel()
		}
		for i := range done {
			var res psengine.Result
			select {
			case res = <-done[i]:
			case <-wctx.Done():
				res = psengine.Result{Bounty: reqs[i].Bounty, Err: context.Cause(wctx)}
			}
			if !yield(res) {
				return
			}
		}
	}
}

var errNoAnswer = errors.New("fake: no answer 30s after the last bounty expired")

// runBatch runs analyze --backend fake over n data: artifacts and checks
// that every one is answered, in order.
func runBatch(t *testing.T, q *fakeQueue, n int, flags ...string) (stderr string) {
	t.Helper()
	p, stdout, errBuf := testProgram(t, byContent)
	p.Backends = map[string]Backend{"fake": q}
	args := append([]string{"analyze", "--backend", "fake"}, flags...)
	var want strings.Builder
	for i := range n {
		uri := fmt.Sprintf("data:,artifact-%04d", i)
		args = append(args, uri)
		fmt.Fprintf(&want, "%s: benign bid=62500000000000000\n", uri)
	}
	if code := p.Run(context.Background(), args); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errBuf)
	}
	if stdout.String() != want.String() {
		t.Errorf("stdout is not every artifact answered in order:\n%s", stdout)
	}
	return errBuf.String()
}

// A batch of more work than the default expiration's worth (600 scans of
// 1 s on one worker: 10 minutes; bounties live 5 minutes) is fully
// answered: each bounty is forged as the window has room, with the wait
// ahead of it in its expiration, so none expires in the queue.
func TestAnalyzeBackendBatchOutlastsTheDefaultExpiration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := &fakeQueue{workers: 1, scan: time.Second}
		start := time.Now()
		stderr := runBatch(t, q, 600)
		if took := time.Since(start); took < 10*time.Minute {
			t.Errorf("600 one-second scans took %v", took)
		}
		if q.expired != 0 || q.answered != 600 {
			t.Errorf("%d expired in the queue, %d answered; want 0 and 600", q.expired, q.answered)
		}
		if q.maxQueued > DefaultInFlight {
			t.Errorf("%d bounties queued at once, want at most --in-flight %d", q.maxQueued, DefaultInFlight)
		}
		// Forged in chunks of 8 as the window has room: 75 expirations.
		if len(q.expiries) < 600/8 {
			t.Errorf("%d distinct expirations: bounties should each get their own", len(q.expiries))
		}
		for w := range q.windows {
			if w < psengine.DefaultLocalTTL {
				t.Errorf("a bounty was given %v, less than the default window %v", w, psengine.DefaultLocalTTL)
			}
		}
		if !strings.Contains(stderr, "time to answer (queue included)") || !strings.Contains(stderr, "benign 600") {
			t.Errorf("summary:\n%s", stderr)
		}
	})
}

// With --timeout each bounty's window is the timeout plus the delivery
// margin from when a worker should reach it; a smaller --in-flight keeps
// fewer queued.
func TestAnalyzeBackendTimeoutPerArtifact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := &fakeQueue{workers: 2, scan: time.Second}
		runBatch(t, q, 100, "--timeout", "4s", "--in-flight", "10")
		if q.expired != 0 || q.maxQueued > 10 {
			t.Errorf("%d expired, %d queued at once; want 0 and at most 10", q.expired, q.maxQueued)
		}
		ttl := 4*time.Second + psengine.DefaultDeliveryMargin
		shortest := time.Hour
		for w := range q.windows {
			shortest = min(shortest, w)
		}
		if shortest != ttl {
			t.Errorf("shortest window %v, want --timeout plus the margin, %v", shortest, ttl)
		}
	})
}

// A batch larger than the queue can take waits for room instead of
// failing.
func TestAnalyzeBackendWaitsForAFullQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := &fakeQueue{workers: 2, scan: 200 * time.Millisecond, capacity: 5}
		runBatch(t, q, 150)
		if q.refused == 0 {
			t.Error("the queue never refused a bounty: the test tests nothing")
		}
		if q.answered != 150 || q.maxQueued > 5 {
			t.Errorf("%d answered, %d queued at once", q.answered, q.maxQueued)
		}
	})
}

// Slow scans and bounties forged before any answer came back: those that
// expire in the queue all the same are forged again and resubmitted.
func TestAnalyzeBackendResubmitsExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A long grace: which bounties expire in the queue, and when their
		// resubmissions are reached, depends on the order the goroutines
		// run in; every one must be answered in the end.
		q := &fakeQueue{workers: 1, scan: 10 * time.Second, grace: time.Hour}
		stderr := runBatch(t, q, 20, "--timeout", "1s")
		if q.expired == 0 {
			t.Error("nothing expired: the test tests nothing")
		}
		if q.answered != 20 || !strings.Contains(stderr, "resubmitting a bounty that expired in the queue") {
			t.Errorf("%d answered; stderr:\n%s", q.answered, stderr)
		}
	})
}

// A clock far off between submitter and workers expires every bounty: the
// resubmissions stop, and the failures are reported.
func TestAnalyzeBackendGivesUpOnExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := &fakeQueue{workers: 1, scan: time.Second, skew: time.Hour}
		p, stdout, stderr := testProgram(t, byContent)
		p.Backends = map[string]Backend{"fake": q}
		if code := p.Run(context.Background(), []string{"analyze", "--backend", "fake", "data:,a", "data:,b"}); code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		if stdout.Len() != 0 || strings.Count(stderr.String(), "bounty expired") != 2 || q.expired != 2*(expiredResubmits+1) {
			t.Errorf("%d expiries; stdout %q; stderr:\n%s", q.expired, stdout, stderr)
		}
	})
}

func TestAnalyzeInFlightUsage(t *testing.T) {
	p, _, stderr := testProgram(t, byContent)
	if code := p.Run(t.Context(), []string{"analyze", "--in-flight", "0", "data:,x"}); code != 2 ||
		!strings.Contains(stderr.String(), "--in-flight") {
		t.Errorf("exit %d; stderr:\n%s", code, stderr)
	}
}

// When the window holds more work than a bounty's lifetime, expirations
// follow the rate answers come back at: past the first window (forged
// before any answer), no bounty expires in the queue.
func TestAnalyzeBackendEstimatesTheWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := &fakeQueue{workers: 1, scan: 10 * time.Second}
		// 32 in flight: 320 s of work ahead, for bounties living 65 s.
		runBatch(t, q, 200, "--timeout", "60s", "--in-flight", "32")
		if q.expired >= 32 {
			t.Errorf("%d expired in the queue: more than the first window", q.expired)
		}
		if q.answered != 200 {
			t.Errorf("%d answered", q.answered)
		}
	})
}

// With no worker serving the queue, the run ends once the first window's
// bounties went unanswered for their lifetime: the rest are reported
// unsubmitted, not waited for one lifetime per window.
func TestAnalyzeBackendStopsWithoutWorkers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := &fakeQueue{workers: 0}
		p, stdout, stderr := testProgram(t, byContent)
		p.Backends = map[string]Backend{"fake": q}
		args := []string{"analyze", "--backend", "fake"}
		for i := range 300 {
			args = append(args, fmt.Sprintf("data:,n%d", i))
		}
		start := time.Now()
		if code := p.Run(context.Background(), args); code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		if took := time.Since(start); took > psengine.DefaultLocalTTL+time.Minute {
			t.Errorf("the run lasted %v with no worker", took)
		}
		if stdout.Len() != 0 {
			t.Errorf("answers with no worker: %s", stdout)
		}
		e := stderr.String()
		if n := strings.Count(e, "not submitted: no worker answered during a bounty's lifetime"); n != 300-DefaultInFlight ||
			!strings.Contains(e, "data:,n0: "+errNoAnswer.Error()) {
			t.Errorf("%d reported unsubmitted, want %d; stderr:\n%s", n, 300-DefaultInFlight, e)
		}
		if !strings.Contains(e, "stalled 236") {
			t.Errorf("summary does not count the unsubmitted:\n%s", e)
		}
	})
}
