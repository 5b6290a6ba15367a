package natsq_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
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
	"github.com/polyswarm/psengine/natsq"
	"github.com/polyswarm/psengine/natsq/embedded"
	"github.com/polyswarm/psengine/psenginetest"
)

// verdictSink is a response_url on loopback that keeps, per path, the
// verdicts it was sent.
type verdictSink struct {
	*httptest.Server
	mu       sync.Mutex
	verdicts map[string][]string
}

func newVerdictSink(t *testing.T) *verdictSink {
	s := &verdictSink{verdicts: map[string][]string{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a struct{ Verdict string }
		_ = json.NewDecoder(r.Body).Decode(&a)
		s.mu.Lock()
		s.verdicts[strings.TrimPrefix(r.URL.Path, "/")] = append(s.verdicts[strings.TrimPrefix(r.URL.Path, "/")], a.Verdict)
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *verdictSink) of(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.verdicts[name]...)
}

// A scan that kills its worker process (SIGKILL) while three innocent
// bounties are scanned beside it and seven wait, on four workers; worker
// processes restarted each time, as a supervisor would. The poison comes
// back a suspect, its attempt unchanged, runs alone, kills its worker
// alone MaxAttempts times, gets its last call (answered unknown) and is
// dead-lettered; every innocent is answered, benign, scanned to its end
// once, and none is charged: those being scanned come back suspects, those
// only held come back as they were and are answered exactly once.
func TestAJobThatKillsItsWorkerProcessIsChargedAlone(t *testing.T) {
	const innocents, maxAttempts = 10, 3
	srv, err := embedded.Start(embedded.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc := connect(t, srv)
	cfg := natsq.Config{Prefix: "death", AckWait: 2 * time.Second, MaxAttempts: maxAttempts}
	sub := newBroker(t, nc, cfg)
	sink := newVerdictSink(t)
	dir := t.TempDir()
	var stderr psenginetest.SyncBuffer
	startWorker := func() *exec.Cmd {
		args := fmt.Sprintf("worker --backend nats --nats-url %s --nats-prefix death --nats-ack-wait %v --nats-max-attempts %d --nats-allow-private --workers 4",
			srv.ClientURL(), cfg.AckWait, maxAttempts)
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), workerEnv+"="+args, deathDirEnv+"="+dir, "PSENGINE_HOME="+t.TempDir(),
			"LOG_LEVEL=info", "LOG_FORMAT=text")
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
		})
		return cmd
	}
	submit := func(name string, id int) {
		b := psenginetest.Bounty([]byte(name), psenginetest.WithID(fmt.Sprint(id)),
			psenginetest.WithResponseURL(sink.URL+"/"+name), psenginetest.WithExpiration(time.Now().Add(10*time.Minute)))
		job, err := broker.NewJob(name, b, time.Now(), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := sub.Submit(context.Background(), job); err != nil {
			t.Fatal(err)
		}
	}
	scans := func() []string {
		data, _ := os.ReadFile(filepath.Join(dir, "scans"))
		return strings.Fields(string(bytes.ReplaceAll(data, []byte("\n"), []byte(" "))))
	}
	killedBySIGKILL := func(cmd *exec.Cmd, err error) bool {
		ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
		return err != nil && ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
	}

	// The first run: the poison scanning, three innocents scanning beside
	// it, seven held waiting for a worker; then the poison kills it.
	first := startWorker()
	submit("poison", 1000)
	waitFor(t, "the poison's scan", func() bool { return len(scans()) == 2 })
	for i := 1; i <= innocents; i++ {
		submit(fmt.Sprint("innocent-", i), 1000+i)
	}
	waitFor(t, "three innocents scanning beside it", func() bool { return len(scans()) == 8 })
	waitFor(t, "the worker to hold every job", func() bool { return ackPending(t, nc, "death") == 1+innocents })
	if err := os.WriteFile(filepath.Join(dir, "poison-gate"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := first.Wait(); !killedBySIGKILL(first, err) {
		t.Fatalf("the first worker ended with %v, want the poison's SIGKILL; stderr:\n%s", err, stderr.String())
	}
	if err := os.WriteFile(filepath.Join(dir, "hold"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	// The supervisor: a new worker each time one dies, until every bounty
	// is settled.
	settled := func() bool {
		for i := 1; i <= innocents; i++ {
			if len(sink.of(fmt.Sprint("innocent-", i))) == 0 {
				return false
			}
		}
		dls, err := sub.DeadLetters(context.Background())
		return err == nil && len(dls) > 0
	}
	deaths := 1
	for runs := 1; ; runs++ {
		if runs > 2*maxAttempts+2 {
			t.Fatalf("%d runs ended by the poison: it is never given up on; stderr:\n%s", deaths, stderr.String())
		}
		w := startWorker()
		exited := make(chan error, 1)
		go func() { exited <- w.Wait() }()
		var err error
	wait:
		for {
			select {
			case err = <-exited:
				break wait
			case <-time.After(10 * time.Millisecond):
				if settled() {
					_ = w.Process.Signal(syscall.SIGTERM)
					err = <-exited
					break wait
				}
			}
		}
		if killedBySIGKILL(w, err) {
			deaths++
			continue
		}
		if err != nil {
			t.Fatalf("run %d: %v; stderr:\n%s", runs, err, stderr.String())
		}
		break
	}

	if want := 1 + maxAttempts; deaths != want {
		t.Errorf("the poison ended %d worker processes, want %d (once beside the innocents, then alone until given up on)", deaths, want)
	}
	got := map[string][]delivered{}
	data, _ := os.ReadFile(filepath.Join(dir, "deliveries"))
	for line := range strings.Lines(string(data)) {
		var d delivered
		if _, err := fmt.Sscanf(line, "%s %d %t %t", &d.ID, &d.Attempt, &d.Suspect, &d.Final); err != nil {
			t.Fatalf("deliveries: %q: %v", line, err)
		}
		got[d.ID] = append(got[d.ID], d)
	}
	wantPoison := []delivered{{"poison", 1, false, false}}
	for range maxAttempts {
		wantPoison = append(wantPoison, delivered{"poison", 1, true, false}) // alone, no attempt counted
	}
	wantPoison = append(wantPoison, delivered{"poison", 1, false, true}) // the last call
	if diff := cmp.Diff(wantPoison, got["poison"]); diff != "" {
		t.Errorf("the poison's deliveries (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"unknown"}, sink.of("poison")); diff != "" {
		t.Errorf("the poison's answers (-want +got):\n%s", diff)
	}
	scanned := map[string]bool{} // the innocents scanning when the poison first struck
	for i, f := range scans()[:8] {
		if i%2 == 0 && f != "poison" {
			scanned[f] = true
		}
	}
	// An innocent may lapse more than once before a handler sees it
	// again (held, or in the broker's hands, while the poison kills its
	// worker): only the deliveries that reached the engine are written
	// down. Those scanning beside the poison come back suspects, and so may
	// those only held that the engine had marked (it marks a few times
	// --workers jobs ahead of their worker, so that the marks' writes hold
	// no worker); a suspect runs alone, and its own death would be charged
	// to it, never another's: no innocent's attempt is ever counted.
	//
	// Each is scanned to its end once: a suspect's scan cut by the first
	// death is done again, alone. Each is answered once: a suspect's
	// delivery takes the engine's shared side again, so the poison, alone,
	// does not scan while a kept answer is being delivered.
	scansOf := map[string]int{}
	for i, f := range scans() {
		if i%2 == 0 {
			scansOf[f]++
		}
	}
	for i := 1; i <= innocents; i++ {
		name := fmt.Sprint("innocent-", i)
		answers := sink.of(name)
		switch {
		case len(answers) != 1, slices.ContainsFunc(answers, func(v string) bool { return v != "benign" }):
			t.Errorf("%s (scanning beside the poison: %t) answered %q", name, scanned[name], answers)
		}
		if want := map[bool]int{false: 1, true: 2}[scanned[name]]; scansOf[name] != want {
			t.Errorf("%s (scanning beside the poison: %t) scanned %d times, want %d", name, scanned[name], scansOf[name], want)
		}
		ds := got[name]
		if scanned[name] && (len(ds) < 2 || !ds[1].Suspect) {
			t.Errorf("%s was scanning when the poison struck; its deliveries %+v, want a suspect after the first", name, ds)
		}
		for j, d := range ds {
			if d.Attempt != 1 || d.Final || (d.Suspect && j == 0) {
				t.Errorf("%s charged for the poison: delivery %d: %+v", name, j+1, d)
			}
		}
	}
	if len(scanned) != 3 {
		t.Errorf("%d innocents scanning beside the poison, want 3", len(scanned))
	}
	dls, err := sub.DeadLetters(context.Background())
	if err != nil || len(dls) != 1 || dls[0].Job.ID != "poison" {
		t.Fatalf("dead letters %v (%v), want the poison's only", dls, err)
	}
	if reason := dls[0].Err.Error(); !strings.Contains(reason, psengine.ErrWorkerDied.Error()) || !strings.Contains(reason, "3 times it was scanned alone") {
		t.Errorf("the poison's dead letter: %s", reason)
	}
	if t.Failed() {
		t.Logf("workers' stderr:\n%s", stderr.String())
	}
}
