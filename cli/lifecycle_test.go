//go:build linux

package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/polyswarm/psengine/localq"
	"github.com/polyswarm/psengine/psenginetest"
)

// A receiver that refuses connections holds no worker: with one worker,
// the bounty behind its answer is scanned and answered while that answer
// is retried (PolySwarm's integration fixtures expire in 2121). SIGTERM
// with a 2 s drain ends the process within 10 s whatever the receiver does;
// the kept answer stays recorded, and the next run delivers it without a
// second scan.
func TestWebhookRefusingReceiverHoldsNoWorker(t *testing.T) {
	r := newDurableRig(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusing := ln.Addr().String()
	ln.Close() // nothing listens there now: connections are refused
	stuck := psenginetest.Bounty([]byte("stuck"), psenginetest.WithID("stuck"),
		psenginetest.WithResponseURL("http://"+refusing+"/stuck"),
		psenginetest.WithExpiration(time.Date(2121, 1, 1, 0, 0, 0, 0, time.UTC)))

	first := r.start(nil, "--workers", "1", "--drain", "2s")
	r.post(first, stuck, "d-stuck")
	psenginetest.Eventually(t, "the stuck bounty scanned", func() bool { return r.scanned()["stuck"] == 1 })
	// Its answer is being retried now; the next bounty needs the one worker.
	sent := time.Now()
	r.post(first, r.bounty(1), "d-1")
	r.await(1, first)
	if d := time.Since(sent); d > 30*time.Second {
		t.Errorf("the deliverable bounty was answered %v after it was sent: held behind the refused answer", d)
	}

	stopped := time.Now()
	if err := first.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := first.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v; stderr:\n%s", err, first.stderr)
	}
	if d := time.Since(stopped); d > 10*time.Second {
		t.Errorf("exited %v after SIGTERM with --drain 2s, want within 10s", d)
	}

	// The receiver is back: the kept answer is delivered, not scanned again.
	ln, err = net.Listen("tcp", refusing)
	if err != nil {
		t.Fatalf("listening again on %s: %v", refusing, err)
	}
	got := make(chan string, 10)
	back := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var a map[string]any
		_ = json.NewDecoder(req.Body).Decode(&a)
		v, _ := a["verdict"].(string)
		got <- req.URL.Path + " " + v
	}))
	back.Listener.Close()
	back.Listener = ln
	back.Start()
	defer back.Close()
	second := r.start(nil, "--workers", "1")
	select {
	case a := <-got:
		if a != "/stuck benign" {
			t.Errorf("the receiver got %q, want the stuck bounty's benign answer", a)
		}
	case <-time.After(time.Minute):
		t.Fatalf("the kept answer was not delivered after the restart; stderr:\n%s", second.stderr)
	}
	second.stop(t)
	scans := r.scanned()
	if n := scans["stuck"]; n != 1 {
		t.Errorf("the stuck bounty was scanned %d times, want once", n)
	}
	r.mu.Lock()
	if n, m := r.answers["1"], scans["bounty 1"]; n != 1 || m != 1 {
		t.Errorf("bounty 1 answered %d times and scanned %d, want once each", n, m)
	}
	r.mu.Unlock()
	if len(got) != 0 {
		t.Errorf("%d more answers for the stuck bounty", len(got))
	}
}

// SIGTERMs in quick succession, each with a drain too short for any scan,
// then a normal run: every bounty answered exactly once, scanned once, none
// dead-lettered: a job handed back by a stopping process is not an attempt.
func TestWebhookRepeatedShortDrainsLoseNothing(t *testing.T) {
	t.Run("six 200ms drains, 4 workers", func(t *testing.T) { repeatedDrains(t, 6, "200ms", 4, false) })
	t.Run("four 1s drains, 2 workers, beside a CPU burner", func(t *testing.T) { repeatedDrains(t, 4, "1s", 2, true) })
}

func repeatedDrains(t *testing.T, stops int, drain string, workers int, burn bool) {
	const n = 40
	r := newDurableRig(t)
	if burn {
		var stop atomic.Bool
		var wg sync.WaitGroup
		for range runtime.NumCPU() {
			wg.Go(func() {
				for x := 0; !stop.Load(); x++ {
					_ = x * x
				}
			})
		}
		defer func() { stop.Store(true); wg.Wait() }()
	}
	slow := []string{"CLI_TEST_SCAN_TIME=3s"}
	w := strconv.Itoa(workers)
	ru := r.start(slow, "--workers", w, "--drain", drain)
	for i := 1; i <= n; i++ {
		r.post(ru, r.bounty(i), fmt.Sprint("delivery-", i))
	}
	for k := range stops {
		if k > 0 {
			ru = r.start(slow, "--workers", w, "--drain", drain)
		}
		ru.stop(t) // SIGTERM right away
	}
	final := r.start([]string{"CLI_TEST_SCAN_TIME=5ms"}, "--workers", w)
	r.mu.Lock()
	left := n - len(r.answers)
	r.mu.Unlock()
	r.await(left, final)
	final.stop(t)
	r.checkOnce(n)
	if out := r.deadLetters(t); out != "" {
		t.Errorf("dead letters after the stops:\n%s", out)
	}
}

// deadLetters runs `counter deadletters list` on the rig's home.
func (r *durableRig) deadLetters(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "deadletters", "list")
	cmd.Env = append(os.Environ(), "CLI_TEST_PROGRAM=counter", "PSENGINE_HOME="+r.home, "TMPDIR="+filepath.Dir(r.home))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("deadletters list: %v; stderr:\n%s", err, stderr.String())
	}
	return stdout.String()
}

// A scan that ends the process (os.Exit) while three innocent bounties are
// being scanned beside it and seven wait, on four workers, restarted each
// time as a supervisor would: each innocent is answered exactly once, the
// poison bounty is answered unknown once and dead-lettered. After the first
// death, the jobs that were being scanned are suspects and run alone, so
// the poison's later deaths are its own.
func TestWebhookPoisonChargedToItself(t *testing.T) {
	const innocents = 10
	r := newDurableRig(t)
	dir := filepath.Dir(r.home)
	holdInnocents, releasePoison, starts := filepath.Join(dir, "hold"), filepath.Join(dir, "poison-gate"), filepath.Join(dir, "starts")
	poison := innocents + 1
	env := []string{fmt.Sprint("CLI_TEST_POISON=bounty ", poison), "CLI_TEST_GATE=" + holdInnocents,
		"CLI_TEST_POISON_GATE=" + releasePoison, "CLI_TEST_STARTS=" + starts}
	startedScans := func() int {
		data, _ := os.ReadFile(starts)
		return bytes.Count(data, []byte("\n"))
	}

	// The first run: the poison scanning, then three innocents beside it
	// (their scans held), seven waiting for a worker; then the poison ends
	// the process.
	first := r.start(env, "--workers", "4")
	r.post(first, r.bounty(poison), fmt.Sprint("delivery-", poison))
	psenginetest.Eventually(t, "the poison's scan", func() bool { return startedScans() == 1 })
	for i := 1; i <= innocents; i++ {
		r.post(first, r.bounty(i), fmt.Sprint("delivery-", i))
	}
	psenginetest.Eventually(t, "three innocents scanning beside it", func() bool { return startedScans() == 4 })
	if err := os.WriteFile(releasePoison, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := first.cmd.Wait(); err == nil || first.cmd.ProcessState.ExitCode() != poisonExit {
		t.Fatalf("the first run ended with %v, want the poison's exit; stderr:\n%s", err, first.stderr)
	}
	if err := os.WriteFile(holdInnocents, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	// The supervisor: restart until a run is not ended by the poison.
	deaths := 1
	for runs := 1; ; runs++ {
		if runs > 10 {
			t.Fatalf("%d runs ended by the poison: it is never given up on", deaths)
		}
		ru, stdout := r.launch(env, "--workers", "4") // the poison may end it before it listens
		exited := make(chan error, 1)
		go func() {
			_, _ = io.Copy(io.Discard, stdout)
			exited <- ru.cmd.Wait()
		}()
		var err error
	wait:
		for {
			select {
			case err = <-exited:
				break wait
			case <-time.After(10 * time.Millisecond):
				if r.answeredAll(poison) {
					_ = ru.cmd.Process.Signal(syscall.SIGTERM)
					err = <-exited
					break wait
				}
			}
		}
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == poisonExit {
			deaths++
			continue
		}
		if err != nil {
			t.Fatalf("run %d: %v; stderr:\n%s", runs, err, ru.stderr)
		}
		break
	}
	t.Logf("the poison ended %d runs", deaths)
	// 1 beside its neighbours, then alone localq.DefaultMaxAttempts times.
	if want := 1 + localq.DefaultMaxAttempts; deaths != want {
		t.Errorf("the poison ended %d runs, want %d (1 beside its neighbours, then alone until given up on)", deaths, want)
	}
	r.mu.Lock()
	if got := r.answers[strconv.Itoa(poison)]; got != 1 || r.verdicts[strconv.Itoa(poison)] != "unknown" {
		t.Errorf("the poison bounty answered %d times, %q; want once, unknown", got, r.verdicts[strconv.Itoa(poison)])
	}
	for i := 1; i <= innocents; i++ {
		if n, v := r.answers[strconv.Itoa(i)], r.verdicts[strconv.Itoa(i)]; n != 1 || v != "benign" {
			t.Errorf("bounty %d answered %d times, %q; want once, benign", i, n, v)
		}
	}
	r.mu.Unlock()
	if out := r.deadLetters(t); !strings.Contains(out, fmt.Sprint("delivery-", poison)) || strings.Count(out, "\n") != 1 {
		t.Errorf("dead letters:\n%s\nwant the poison bounty's only", out)
	}
}

// answeredAll tells whether bounties 1..n are all answered.
func (r *durableRig) answeredAll(n int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 1; i <= n; i++ {
		if r.answers[strconv.Itoa(i)] == 0 {
			return false
		}
	}
	return true
}
