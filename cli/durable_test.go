//go:build linux

package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
)

// counter answers benign after appending its artifact's content, one line
// per completed scan, to the file CLI_TEST_SCANS. A scan first waits for
// the file CLI_TEST_GATE to exist, when that is set, then takes
// CLI_TEST_SCAN_TIME; it honours its ctx throughout. The artifact whose
// content is CLI_TEST_POISON ends the process (exit status poisonExit),
// once the file CLI_TEST_POISON_GATE exists when that is set (instead of
// CLI_TEST_GATE). With CLI_TEST_STARTS, each scan appends its content to
// that file as it starts.
var counter = psengine.ScannerFunc(func(ctx context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	data, _ := a.Bytes()
	if starts := os.Getenv("CLI_TEST_STARTS"); starts != "" {
		appendLine(starts, data)
	}
	gate := os.Getenv("CLI_TEST_GATE")
	poison := os.Getenv("CLI_TEST_POISON")
	if poison != "" && string(data) == poison {
		gate = os.Getenv("CLI_TEST_POISON_GATE")
	}
	if gate != "" {
		for {
			if _, err := os.Stat(gate); err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return psengine.Analysis{}, ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	if poison != "" && string(data) == poison {
		os.Exit(poisonExit) // as a scanner's fatal error would
	}
	if d, err := time.ParseDuration(os.Getenv("CLI_TEST_SCAN_TIME")); err == nil {
		select {
		case <-ctx.Done():
			return psengine.Analysis{}, ctx.Err()
		case <-time.After(d):
		}
	}
	if err := appendLine(os.Getenv("CLI_TEST_SCANS"), data); err != nil {
		return psengine.Analysis{}, err
	}
	return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.5,
		Metadata: psengine.Metadata{Extra: map[string]any{"pid": os.Getpid()}}}, nil
})

// appendLine appends line and a newline to the file at path.
func appendLine(path string, line []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(append(line, '\n'))
	return err
}

const durableSecret = "durable secret"

// durableRig is a counter engine's home (its state directory, so its
// intake store, lives there), its scan log, and a response server that
// counts the answers per bounty id.
type durableRig struct {
	t        *testing.T
	home     string
	scans    string
	receiver *httptest.Server

	mu       sync.Mutex
	answers  map[string]int
	verdicts map[string]string // the last answer's verdict, by bounty id
	arrived  chan string
}

// poisonExit is how the counter engine ends on its poison artifact.
const poisonExit = 7

func newDurableRig(t *testing.T) *durableRig {
	dir := t.TempDir()
	r := &durableRig{t: t, home: filepath.Join(dir, "home"), scans: filepath.Join(dir, "scans"),
		answers: map[string]int{}, verdicts: map[string]string{}, arrived: make(chan string, 1000)}
	r.receiver = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var a map[string]any
		if err := json.NewDecoder(req.Body).Decode(&a); err != nil {
			t.Errorf("answer %v: %v", a, err)
		}
		id := strings.TrimPrefix(req.URL.Path, "/")
		r.mu.Lock()
		r.answers[id]++
		r.verdicts[id], _ = a["verdict"].(string)
		r.mu.Unlock()
		r.arrived <- id
	}))
	t.Cleanup(r.receiver.Close)
	return r
}

// bounty is bounty number i: its artifact's content is "bounty i" and its
// answer goes to the receiver under /i.
func (r *durableRig) bounty(i int) psengine.Bounty {
	return psenginetest.Bounty([]byte(fmt.Sprint("bounty ", i)), psenginetest.WithID(strconv.Itoa(i)),
		psenginetest.WithResponseURL(fmt.Sprintf("%s/%d", r.receiver.URL, i)),
		psenginetest.WithExpiration(time.Now().Add(5*time.Minute)))
}

// run is one run of the counter engine's `webhook`.
type run struct {
	cmd    *exec.Cmd
	base   string
	stderr *psenginetest.SyncBuffer
}

// start runs `counter webhook` on the rig's home with the environment
// additions env and the extra args, and waits until it listens.
func (r *durableRig) start(env []string, args ...string) *run {
	r.t.Helper()
	ru, stdout := r.launch(env, args...)
	ru.base = listeningURL(r.t, stdout, ru.stderr)
	return ru
}

// launch starts `counter webhook` as start does, without waiting for it to
// listen: the caller reads its stdout.
func (r *durableRig) launch(env []string, args ...string) (*run, io.Reader) {
	r.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		r.t.Fatal(err)
	}
	args = append([]string{"webhook", "--secret", durableSecret, "--allow-private", "-p", "0"}, args...)
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "CLI_TEST_PROGRAM=counter", "PSENGINE_HOME="+r.home, "TMPDIR="+filepath.Dir(r.home),
		"CLI_TEST_SCANS="+r.scans, "LOG_LEVEL=info", "LOG_FORMAT=text")
	cmd.Env = append(cmd.Env, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	ru := &run{cmd: cmd, stderr: &psenginetest.SyncBuffer{}}
	cmd.Stderr = ru.stderr
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return ru, stdout
}

// post sends bounty i under delivery and wants 202.
func (r *durableRig) post(ru *run, b psengine.Bounty, delivery string) {
	r.t.Helper()
	r.postWant(ru, b, delivery, http.StatusAccepted)
}

// postWant posts b under delivery and wants the status code want.
func (r *durableRig) postWant(ru *run, b psengine.Bounty, delivery string, want int) {
	r.t.Helper()
	if code := postBounty(r.t, ru.base, b, delivery, durableSecret); code != want {
		r.t.Fatalf("bounty %s (delivery %s): status %d, want %d; stderr:\n%s", b.ID, delivery, code, want, ru.stderr)
	}
}

// await waits for n more answers.
func (r *durableRig) await(n int, ru *run) {
	r.t.Helper()
	for range n {
		select {
		case <-r.arrived:
		case <-time.After(time.Minute):
			r.t.Fatalf("an answer did not come; stderr:\n%s", ru.stderr)
		}
	}
}

// stop sends SIGTERM and wants exit status 0.
func (r *run) stop(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Wait(); err != nil {
		t.Fatalf("webhook exit after SIGTERM: %v; stderr:\n%s", err, r.stderr)
	}
}

// scanned counts the completed scans per artifact content.
func (r *durableRig) scanned() map[string]int {
	r.t.Helper()
	data, err := os.ReadFile(r.scans)
	if err != nil && !os.IsNotExist(err) {
		r.t.Fatal(err)
	}
	out := map[string]int{}
	for line := range strings.Lines(string(data)) {
		out[strings.TrimSpace(line)]++
	}
	return out
}

// checkOnce wants each of bounties 1..n answered once and scanned once, and
// nothing else.
func (r *durableRig) checkOnce(n int) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	scans := r.scanned()
	for i := 1; i <= n; i++ {
		if got := r.answers[strconv.Itoa(i)]; got != 1 {
			r.t.Errorf("bounty %d answered %d times, want 1", i, got)
		}
		if v := r.verdicts[strconv.Itoa(i)]; v != "benign" {
			r.t.Errorf("bounty %d answered %q, want benign", i, v)
		}
		if got := scans[fmt.Sprint("bounty ", i)]; got != 1 {
			r.t.Errorf("bounty %d scanned %d times, want 1", i, got)
		}
	}
	if len(r.answers) != n || len(scans) != n {
		r.t.Errorf("answers for %d bounties and scans of %d, want %d", len(r.answers), len(scans), n)
	}
}

var countAttr = regexp.MustCompile(`resuming bounties recorded by an earlier run" count=(\d+)`)

// kill -9 after N bounties were answered 202, then a restart: all N are
// answered, each once, scanned once.
func TestWebhookKilledLosesNothing(t *testing.T) {
	const n = 20
	r := newDurableRig(t)
	gate := filepath.Join(filepath.Dir(r.home), "gate")
	env := []string{"CLI_TEST_GATE=" + gate}

	first := r.start(env, "--workers", "2")
	for i := 1; i <= n; i++ {
		r.post(first, r.bounty(i), fmt.Sprint("delivery-", i))
	}
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()
	r.mu.Lock()
	if len(r.answers) != 0 {
		t.Fatalf("answers before the kill: %v (the scans were held)", r.answers)
	}
	r.mu.Unlock()

	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	second := r.start(env, "--workers", "2")
	r.await(n, second)
	second.stop(t)
	if m := countAttr.FindStringSubmatch(second.stderr.String()); m == nil || m[1] != strconv.Itoa(n) {
		t.Errorf("the restart does not log %d bounties resumed; stderr:\n%s", n, second.stderr)
	}
	r.checkOnce(n)
}

var leftAttr = regexp.MustCompile(`bounty left recorded: it is answered at the next start" bounty=(\d+)`)

// SIGTERM with a drain too short for the queue: nothing is lost. What was
// not answered within --drain is logged by id and answered by the next
// run; every bounty is answered once.
func TestWebhookTerminatedLosesNothing(t *testing.T) {
	const n = 12
	r := newDurableRig(t)
	first := r.start([]string{"CLI_TEST_SCAN_TIME=300ms"}, "--workers", "1", "--drain", "1s")
	for i := 1; i <= n; i++ {
		r.post(first, r.bounty(i), fmt.Sprint("delivery-", i))
	}
	first.stop(t)
	var left []string
	for _, m := range leftAttr.FindAllStringSubmatch(first.stderr.String(), -1) {
		left = append(left, m[1])
	}
	r.mu.Lock()
	answered := len(r.answers)
	r.mu.Unlock()
	if answered+len(left) != n || len(left) == 0 {
		t.Fatalf("%d answered and %d logged as left (%v) after SIGTERM, want %d in all, some left; stderr:\n%s",
			answered, len(left), left, n, first.stderr)
	}

	second := r.start(nil, "--workers", "2")
	r.await(len(left), second)
	second.stop(t)
	r.checkOnce(n)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range left {
		if r.answers[id] != 1 {
			t.Errorf("bounty %s, logged as left, answered %d times", id, r.answers[id])
		}
	}
}

// The same signed body under new delivery ids (PolySwarm's signature does
// not cover the delivery id), in one run and after a restart: one scan,
// one answer.
func TestWebhookReplayScannedOnce(t *testing.T) {
	r := newDurableRig(t)
	replayed := r.bounty(1)
	first := r.start(nil, "--workers", "1")
	r.post(first, replayed, "replay-0")
	for d := range 4 { // acknowledged as duplicates
		r.postWant(first, replayed, fmt.Sprint("replay-", d+1), http.StatusOK)
	}
	r.post(first, r.bounty(2), "sentinel-2") // one worker, in order: answered after any copy
	r.await(2, first)
	first.stop(t)

	second := r.start(nil, "--workers", "1")
	r.postWant(second, replayed, "replay-after-restart", http.StatusOK)
	r.post(second, r.bounty(3), "sentinel-3")
	r.await(1, second)
	second.stop(t)
	r.checkOnce(3)
	if len(r.arrived) != 0 {
		t.Errorf("%d answers more than the bounties", len(r.arrived))
	}
}
