package localq_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/google/go-cmp/cmp"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/localq"
	"github.com/polyswarm/psengine/pipeline"
	"github.com/polyswarm/psengine/psenginetest"
)

// fastConfig redelivers within milliseconds.
func fastConfig() localq.Config {
	return localq.Config{MaxAttempts: 3, Backoff: pipeline.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}}
}

// open opens a broker on path and releases it when the test ends.
func open(t *testing.T, path string, cfg localq.Config) *localq.Broker {
	t.Helper()
	q, err := localq.Open(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := q.Release(); err != nil {
			t.Errorf("Release: %v", err)
		}
	})
	return q
}

func storePath(t *testing.T) string { return filepath.Join(t.TempDir(), "state", localq.DefaultFile) }

func TestBrokerConformance(t *testing.T) {
	psenginetest.TestBroker(t, func(t *testing.T) psenginetest.BrokerHarness {
		cfg := fastConfig()
		q := open(t, storePath(t), cfg)
		return psenginetest.BrokerHarness{Broker: q, DeadLetters: q.DeadLetters, MaxAttempts: cfg.MaxAttempts, Keys: true}
	})
}

func job(id, key string, opts ...psenginetest.BountyOption) broker.Job {
	b := psenginetest.Bounty([]byte(id), append([]psenginetest.BountyOption{psenginetest.WithID(id)}, opts...)...)
	return broker.Job{ID: id, Key: key, Bounty: b}
}

func mustSubmit(t *testing.T, q broker.Broker, j broker.Job) {
	t.Helper()
	if err := q.Submit(context.Background(), j); err != nil {
		t.Fatalf("Submit(%s): %v", j.ID, err)
	}
}

// mustRefuse submits a duplicate: Submit must refuse it.
func mustRefuse(t *testing.T, q broker.Broker, j broker.Job) {
	t.Helper()
	if err := q.Submit(context.Background(), j); !errors.Is(err, psengine.ErrDuplicate) {
		t.Fatalf("Submit(%s): %v, want ErrDuplicate", j.ID, err)
	}
}

// collect consumes q with h until want jobs were acknowledged, then stops
// and returns every delivery seen, by job ID.
func collect(t *testing.T, q broker.Broker, want int, h broker.Handler) map[string][]broker.Job {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	seen := map[string][]broker.Job{}
	acked := 0
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- q.Consume(ctx, func(ctx context.Context, j broker.Job) error {
			err := h(ctx, j)
			mu.Lock()
			defer mu.Unlock()
			seen[j.ID] = append(seen[j.ID], j)
			if err == nil {
				if acked++; acked == want {
					close(done)
				}
			}
			return err
		})
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Errorf("only %d of %d jobs acknowledged", acked, want)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Consume: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return seen
}

func ack(context.Context, broker.Job) error { return nil }

// Reopened, the store delivers what was not settled, with its attempt and
// kept answer, and not what was; settled IDs and keys still drop
// duplicates.
func TestReopenDeliversWhatWasNotSettled(t *testing.T) {
	path := storePath(t)
	cfg := fastConfig()
	cfg.Backoff = pipeline.Backoff{Initial: time.Hour} // a failed job waits in the store
	kept := psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.25, Score: 40, Bid: 77,
		Metadata: psengine.Metadata{MalwareFamily: "none", Extra: map[string]any{"note": "kept"}}}

	q, err := localq.Open(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"acked", "failed", "untouched"} {
		mustSubmit(t, q, job(id, "key-"+id))
	}
	ctx, cancel := context.WithCancel(context.Background())
	settled := make(chan struct{}, 2)
	errc := make(chan error, 1)
	go func() {
		errc <- q.Consume(ctx, func(ctx context.Context, j broker.Job) error {
			defer func() { settled <- struct{}{} }()
			switch j.ID {
			case "acked":
				return nil
			case "failed":
				if err := q.KeepAnswer(ctx, j, kept); err != nil {
					t.Errorf("KeepAnswer: %v", err)
				}
				return errors.New("delivery failed")
			}
			<-ctx.Done() // "untouched" is never reached: one consumer
			return ctx.Err()
		})
	}()
	<-settled
	<-settled
	// The handlers returned; wait until the consumer settled them in the
	// store too (a consumer cancelled before it looked would hand the
	// failed job back instead: no attempt counted).
	psenginetest.Eventually(t, "the failed job recorded for its second attempt", func() bool {
		rec, err := q.Recorded(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range rec {
			if j.ID == "acked" || j.ID == "failed" && j.Attempt != 2 {
				return false
			}
		}
		return true
	})
	if got, err := q.DeadLetters(context.Background()); err != nil || len(got) != 0 {
		t.Fatalf("dead letters %v, %v", got, err)
	}
	q.Abandon()
	cancel()
	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Consume: %v", err)
	}
	if err := q.Release(); err != nil {
		t.Fatal(err)
	}

	q = open(t, path, fastConfig())
	if n := q.Len(); n != 2 {
		t.Errorf("Len after reopen = %d, want 2 (failed, untouched)", n)
	}
	mustRefuse(t, q, job("acked", "another key"))   // settled ID
	mustRefuse(t, q, job("replayed", "key-acked"))  // settled key
	mustRefuse(t, q, job("again", "key-untouched")) // pending key
	seen := collect(t, q, 2, ack)
	if len(seen) != 2 || len(seen["failed"]) != 1 || len(seen["untouched"]) != 1 {
		t.Fatalf("delivered after reopen: %v, want failed and untouched once each", seen)
	}
	f := seen["failed"][0]
	if f.Attempt != 2 {
		t.Errorf("failed job redelivered with attempt %d, want 2", f.Attempt)
	}
	if f.Answer == nil {
		t.Error("failed job redelivered without its kept answer")
	} else if diff := cmp.Diff(kept, *f.Answer, psenginetest.AnalysisOptions); diff != "" {
		t.Errorf("kept answer after reopen (-want +got):\n%s", diff)
	}
	if u := seen["untouched"][0]; u.Attempt != 1 || u.Answer != nil || u.Key != "key-untouched" {
		t.Errorf("untouched job delivered as %+v, want attempt 1, no answer, its key", u)
	}
	if rec, err := q.Recorded(context.Background()); err != nil || len(rec) != 0 {
		t.Errorf("Recorded after every job was acknowledged: %v, %v; want none", rec, err)
	}
}

// A job whose bounty expired while no process had the store open is
// removed and reported, not delivered.
func TestOpenRemovesExpired(t *testing.T) {
	path := storePath(t)
	q, err := localq.Open(path, fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	mustSubmit(t, q, job("stale", "k1", psenginetest.WithExpiration(time.Now().Add(-time.Second))))
	mustSubmit(t, q, job("fresh", "k2"))
	if err := q.Release(); err != nil {
		t.Fatal(err)
	}
	var expired []string
	var logs psenginetest.SyncBuffer
	cfg := fastConfig()
	cfg.OnExpired = func(j broker.Job) { expired = append(expired, j.ID) }
	cfg.Logger = slogTo(&logs)
	q = open(t, path, cfg)
	if diff := cmp.Diff([]string{"stale"}, expired); diff != "" {
		t.Errorf("reported expired (-want +got):\n%s", diff)
	}
	if !strings.Contains(logs.String(), "job=stale") {
		t.Errorf("the expired job is not logged by id:\n%s", logs.String())
	}
	seen := collect(t, q, 1, ack)
	if len(seen["stale"]) != 0 || len(seen["fresh"]) != 1 {
		t.Errorf("delivered %v, want fresh only", seen)
	}
}

// IDs and keys are forgotten once their bounty expired, in memory and in
// the store; until then they drop duplicates.
func TestForgetsAfterExpiration(t *testing.T) {
	path := storePath(t)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	cfg := localq.WithClock(fastConfig(), clock)
	q := open(t, path, cfg)
	exp := psenginetest.WithExpiration(clock().Add(10 * time.Minute))
	mustSubmit(t, q, job("a", "key-a", exp))
	collect(t, q, 1, ack)

	advance(9 * time.Minute)
	mustRefuse(t, q, job("a", "other", exp))  // ID still remembered
	mustRefuse(t, q, job("a2", "key-a", exp)) // key still remembered
	mustSubmit(t, q, job("b", "key-b", exp))  // new
	seen := collect(t, q, 1, ack)
	if len(seen) != 1 || len(seen["b"]) != 1 {
		t.Fatalf("delivered %v before the expiration, want b only", seen)
	}

	advance(2 * time.Minute) // a and b expired
	mustSubmit(t, q, job("c", "key-c"))
	if n, err := localq.Remembered(q); err != nil || n != 1 {
		t.Errorf("store remembers the ids and keys of %d jobs (%v) after the expiration, want only c's", n, err)
	}
	mustSubmit(t, q, job("a", "key-a", psenginetest.WithExpiration(clock().Add(time.Hour))))
	seen = collect(t, q, 2, ack)
	if len(seen["a"]) != 1 || len(seen["c"]) != 1 {
		t.Errorf("delivered %v after the expiration, want a again and c", seen)
	}
}

// The store keeps the newest dead letters only.
func TestDeadLettersBounded(t *testing.T) {
	cfg := fastConfig()
	cfg.DeadLetters = 2
	q := open(t, storePath(t), cfg)
	for i := range 4 {
		mustSubmit(t, q, job(fmt.Sprint("poison-", i), ""))
	}
	var calls sync.WaitGroup
	calls.Add(4)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- q.Consume(ctx, func(context.Context, broker.Job) error {
			defer calls.Done()
			return psengine.Permanent(errors.New("poison"))
		})
	}()
	calls.Wait()
	q.Close()
	if err := <-errc; err != nil {
		t.Errorf("Consume after Close and drain: %v, want nil", err)
	}
	cancel()
	dls, err := q.DeadLetters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range dls {
		ids = append(ids, d.Job.ID)
		if !strings.Contains(d.Err.Error(), "poison") {
			t.Errorf("dead letter %s: reason %q", d.Job.ID, d.Err)
		}
	}
	if diff := cmp.Diff([]string{"poison-2", "poison-3"}, ids); diff != "" {
		t.Errorf("dead letters kept (-want +got):\n%s", diff)
	}
	if rec, _ := q.Recorded(context.Background()); len(rec) != 0 {
		t.Errorf("dead-lettered jobs still recorded: %v", rec)
	}
}

// A second process (here: a second Open) cannot use the store at once.
func TestOpenLocked(t *testing.T) {
	path := storePath(t)
	open(t, path, fastConfig())
	cfg := fastConfig()
	cfg.LockTimeout = 50 * time.Millisecond
	if q, err := localq.Open(path, cfg); !errors.Is(err, localq.ErrLocked) {
		if err == nil {
			_ = q.Release()
		}
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

// Abandon stops deliveries; what it returns stays recorded.
func TestAbandonKeepsJobsRecorded(t *testing.T) {
	path := storePath(t)
	q, err := localq.Open(path, fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustSubmit(t, q, job(fmt.Sprint("j", i), ""))
	}
	left := q.Abandon()
	if len(left) != 3 || left[0].ID != "j0" || left[2].ID != "j2" {
		t.Errorf("Abandon returned %v, want j0..j2 in order", left)
	}
	if err := q.Submit(context.Background(), job("late", "")); !errors.Is(err, psengine.ErrClosed) {
		t.Errorf("Submit after Abandon: %v, want ErrClosed", err)
	}
	if err := q.Consume(context.Background(), ack); err != nil {
		t.Errorf("Consume after Abandon: %v, want nil at once", err)
	}
	if err := q.Release(); err != nil {
		t.Fatal(err)
	}
	q = open(t, path, fastConfig())
	if n := q.Len(); n != 3 {
		t.Errorf("%d jobs resumed after Abandon, want 3", n)
	}
}

// kill -9 of a process holding a broker: every job it accepted comes back
// at the next Open, the one whose answer was kept with its answer.
func TestKilledProcessLosesNothing(t *testing.T) {
	path := storePath(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "LOCALQ_TEST_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr psenginetest.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "kept" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child said %q, %v; stderr:\n%s", line, err, stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	q := open(t, path, fastConfig())
	if n := q.Len(); n != childJobs {
		t.Errorf("%d jobs resumed, want %d", n, childJobs)
	}
	seen := collect(t, q, childJobs, ack)
	for i := range childJobs {
		id := fmt.Sprint("job-", i)
		got := seen[id]
		if len(got) != 1 {
			t.Errorf("%s delivered %d times after the kill, want 1", id, len(got))
			continue
		}
		if i == 0 {
			if got[0].Answer == nil || got[0].Answer.Metadata.MalwareFamily != "Kept.Before.Kill" {
				t.Errorf("%s came back with answer %+v, want the kept one", id, got[0].Answer)
			}
		} else if got[0].Answer != nil {
			t.Errorf("%s came back with an answer: %+v", id, got[0].Answer)
		}
	}
}

const childJobs = 20

// runChild is the killed process of TestKilledProcessLosesNothing: it
// accepts childJobs jobs, keeps an answer for the first while handling it,
// says "kept" and waits to be killed.
func runChild(path string) {
	q, err := localq.Open(path, localq.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for i := range childJobs {
		id := fmt.Sprint("job-", i)
		if err := q.Submit(context.Background(), job(id, "key-"+id)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	_ = q.Consume(context.Background(), func(ctx context.Context, j broker.Job) error {
		a := psengine.Analysis{Verdict: psengine.Malicious, Metadata: psengine.Metadata{MalwareFamily: "Kept.Before.Kill"}}
		if err := q.KeepAnswer(ctx, j, a); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("kept")
		select {} // delivering, until killed
	})
}

// A job whose scan ends the process (a scanner's os.Exit, a fatal runtime
// error) is charged for it, and its neighbours are not: the Open after a
// death makes each job that was being scanned a suspect, which runs alone
// (here: consumed first) and costs no attempt; each death of a suspect
// counts, and after MaxAttempts of them the job gets its last call (to be
// answered unknown) and is dead-lettered. The jobs behind it are answered
// once each.
func TestJobEndingTheProcessIsDeadLettered(t *testing.T) {
	path := storePath(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var codes []int
	var answered, lastCalls, dead []string
	for run := 0; run < 10; run++ {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), "LOCALQ_TEST_POISON="+path, fmt.Sprint("LOCALQ_TEST_RUN=", run))
		var stderr psenginetest.SyncBuffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		code := cmd.ProcessState.ExitCode()
		if err != nil && code != poisonExit {
			t.Fatalf("run %d: %v\n%s", run, err, stderr.String())
		}
		codes = append(codes, code)
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if id, ok := strings.CutPrefix(line, "answered "); ok {
				answered = append(answered, id)
			} else if id, ok := strings.CutPrefix(line, "last call "); ok {
				lastCalls = append(lastCalls, id)
			} else if rest, ok := strings.CutPrefix(line, "dead "); ok {
				dead = append(dead, rest)
			}
		}
		if code == 0 {
			break
		}
	}
	// Run 0 ends scanning the poison job beside nobody marked alone (a
	// suspect from then on, nothing counted); runs 1-3 are its deaths alone
	// 1-3; run 4 gives it its last call.
	want := []int{poisonExit, poisonExit, poisonExit, poisonExit, 0}
	if !slices.Equal(codes, want) {
		t.Errorf("exit codes %v, want %v", codes, want)
	}
	if !slices.Equal(answered, []string{"innocent-0", "innocent-1"}) {
		t.Errorf("answered %v, want each innocent job once, in order", answered)
	}
	if !slices.Equal(lastCalls, []string{"poison"}) {
		t.Errorf("last calls %v, want the poison job's, once", lastCalls)
	}
	if len(dead) != 1 || !strings.HasPrefix(dead[0], "poison ") || !strings.Contains(dead[0], psengine.ErrWorkerDied.Error()) {
		t.Errorf("dead letters reported %q, want the poison job's, as it ended the process", dead)
	}
	q := open(t, path, fastConfig())
	if n := q.Len(); n != 0 {
		t.Errorf("%d jobs left in the store, want none", n)
	}
	letters, err := q.DeadLetters(context.Background())
	if err != nil || len(letters) != 1 || letters[0].Job.ID != "poison" || letters[0].Job.Attempt != 1 {
		t.Errorf("dead letters in the store: %+v, %v; want the poison job, its attempts untouched (deaths are not attempts)", letters, err)
	}
}

const poisonExit = 3

// runPoison is one run of TestJobEndingTheProcessIsDeadLettered: the first
// records a poison job and two innocent ones; every run then consumes,
// ending the process with poisonExit when it takes the poison job.
func runPoison(path string) {
	q, err := localq.Open(path, localq.Config{MaxAttempts: 3, OnDeadLetter: func(d broker.DeadLetter) {
		fmt.Printf("dead %s %v\n", d.Job.ID, d.Err)
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if os.Getenv("LOCALQ_TEST_RUN") == "0" {
		for _, id := range []string{"poison", "innocent-0", "innocent-1"} {
			if err := q.Submit(context.Background(), job(id, "key-"+id)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
	}
	q.Close() // Consume returns once the store is drained
	// One consumer, as an engine's scans: marked, scanned, answer kept.
	err = q.Consume(context.Background(), func(ctx context.Context, j broker.Job) error {
		if j.Final != "" {
			fmt.Println("last call", j.ID)
			return nil
		}
		if err := q.MarkScanning(ctx, j); err != nil {
			return err
		}
		if j.ID == "poison" {
			os.Exit(poisonExit)
		}
		if err := q.KeepAnswer(ctx, j, psengine.Analysis{Verdict: psengine.Benign}); err != nil {
			return err
		}
		fmt.Println("answered", j.ID)
		return nil
	})
	if err == nil {
		err = q.Release()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
