package resultcache_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/bid"
	"github.com/polyswarm/psengine/psenginetest"
	"github.com/polyswarm/psengine/resultcache"
)

func TestMain(m *testing.M) {
	if path := os.Getenv("RESULTCACHE_TEST_CHILD"); path != "" {
		runChild(path)
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

var ctx = context.Background()

func open(t *testing.T, path string, cfg resultcache.Config) *resultcache.Cache {
	t.Helper()
	c, err := resultcache.Open(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func key(gen string, i int) psengine.CacheKey {
	return psengine.CacheKey{Generation: gen, Type: psengine.FileArtifact, SHA256: fmt.Sprintf("%064x", i)}
}

func analysis(i int) psengine.Analysis {
	return psengine.Analysis{Verdict: psengine.Malicious, Confidence: 0.5, Score: 80, Likelihood: bid.Likely, Bid: 7,
		Metadata: psengine.Metadata{MalwareFamily: fmt.Sprint("Family.", i), Comments: []string{"c"},
			Scanner: psengine.ScannerInfo{SignaturesVersion: "s1"},
			Extra:   map[string]any{"report": map[string]any{"n": float64(i), "rules": []any{"a", "b"}}}}}
}

// Every field the bid stage and the answer read comes back, queued or
// committed, and after a reopen.
func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", resultcache.DefaultFile)
	c := open(t, path, resultcache.Config{FlushDelay: time.Hour}) // committed by Flush only
	c.Retain(ctx, "g1")
	c.Put(ctx, key("g1", 1), analysis(1))
	for _, when := range []string{"queued", "committed", "reopened"} {
		switch when {
		case "committed":
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
		case "reopened":
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			c = open(t, path, resultcache.Config{})
			if st := c.Stats(); st.Generation != "g1" || st.Records != 1 || st.Bytes <= 0 {
				t.Errorf("stats after reopening: %+v", st)
			}
		}
		got, ok := c.Get(ctx, key("g1", 1))
		if !ok {
			t.Fatalf("%s: miss", when)
		}
		if diff := cmp.Diff(analysis(1), got); diff != "" {
			t.Errorf("%s: analysis (-put +got):\n%s", when, diff)
		}
		for _, other := range []psengine.CacheKey{key("g1", 2), key("g2", 1),
			{Generation: "g1", Type: psengine.FileArtifact, SHA256: key("", 1).SHA256, Scanner: "policy=2"},
			{Generation: "g1", Type: psengine.URLArtifact, SHA256: key("", 1).SHA256}} {
			if _, ok := c.Get(ctx, other); ok {
				t.Errorf("%s: hit for %+v", when, other)
			}
		}
	}
}

// A new generation drops the records of the others, and Puts of another
// generation than the one retained are dropped, queued or not.
func TestRetainDropsOtherGenerations(t *testing.T) {
	path := filepath.Join(t.TempDir(), resultcache.DefaultFile)
	c := open(t, path, resultcache.Config{FlushDelay: time.Hour})
	c.Retain(ctx, "g1")
	for i := range 10 {
		c.Put(ctx, key("g1", i), analysis(i))
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	c.Put(ctx, key("g1", 100), analysis(100)) // queued when g2 comes
	c.Put(ctx, key("g2", 1), analysis(1))     // not the generation retained
	c.Retain(ctx, "g2")
	c.Put(ctx, key("g1", 101), analysis(101)) // an old generation's straggler
	c.Put(ctx, key("g2", 2), analysis(2))
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []psengine.CacheKey{key("g1", 0), key("g1", 100), key("g1", 101), key("g2", 1)} {
		if _, ok := c.Get(ctx, k); ok {
			t.Errorf("hit for %+v after Retain(g2)", k)
		}
	}
	if _, ok := c.Get(ctx, key("g2", 2)); !ok {
		t.Error("miss for the new generation's record")
	}
	if st := c.Stats(); st.Generation != "g2" || st.Records != 1 {
		t.Errorf("stats %+v, want g2 with 1 record", st)
	}
	// The same generation again keeps its records; "" drops everything.
	c.Retain(ctx, "g2")
	if _, ok := c.Get(ctx, key("g2", 2)); !ok {
		t.Error("Retain of the generation held dropped its records")
	}
	c.Retain(ctx, "")
	if _, ok := c.Get(ctx, key("g2", 2)); ok {
		t.Error(`Retain("") kept a record`)
	}
}

// The records stay within MaxBytes, the oldest evicted first, and the
// file does not grow past a small multiple of the bound.
func TestBoundedOldestEvicted(t *testing.T) {
	const maxBytes = 64 << 10
	path := filepath.Join(t.TempDir(), resultcache.DefaultFile)
	c := open(t, path, resultcache.Config{MaxBytes: maxBytes, FlushDelay: time.Hour})
	c.Retain(ctx, "g")
	const n = 2000
	for i := range n {
		c.Put(ctx, key("g", i), analysis(i))
		if i%100 == 99 {
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	st := c.Stats()
	if st.Bytes > maxBytes || st.Records <= 0 || st.Records >= n {
		t.Fatalf("stats %+v: want records within %d bytes, some evicted", st, maxBytes)
	}
	if _, ok := c.Get(ctx, key("g", 0)); ok {
		t.Error("the oldest record was kept")
	}
	for i := n - st.Records; i < n; i++ {
		if _, ok := c.Get(ctx, key("g", i)); !ok {
			t.Fatalf("record %d of the newest %d evicted", i, st.Records)
		}
	}
	if _, ok := c.Get(ctx, key("g", n-st.Records-1)); ok {
		t.Errorf("record %d kept: more than the newest %d", n-st.Records-1, st.Records)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 16*maxBytes {
		t.Errorf("the file is %d bytes for a bound of %d", fi.Size(), maxBytes)
	}
}

// A record larger than the bound is not kept, nor any once closed.
func TestPutDrops(t *testing.T) {
	c := open(t, filepath.Join(t.TempDir(), "r.db"), resultcache.Config{MaxBytes: 4096})
	c.Retain(ctx, "g")
	big := analysis(1)
	big.Metadata.Comments = []string{strings.Repeat("x", 8192)}
	c.Put(ctx, key("g", 1), big)
	if _, ok := c.Get(ctx, key("g", 1)); ok {
		t.Error("a record over MaxBytes was kept")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c.Put(ctx, key("g", 2), analysis(2))
	if _, ok := c.Get(ctx, key("g", 2)); ok {
		t.Error("Put after Close was kept")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// One process at a time: the second Open fails with ErrLocked.
func TestLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	open(t, path, resultcache.Config{})
	_, err := resultcache.Open(path, resultcache.Config{LockTimeout: 20 * time.Millisecond})
	if !errors.Is(err, resultcache.ErrLocked) {
		t.Errorf("second Open: %v, want ErrLocked", err)
	}
}

// A file bbolt cannot read is replaced by an empty cache, with a warning.
func TestUnreadableFileReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a bbolt file\n"), 512), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs psenginetest.SyncBuffer
	c := open(t, path, resultcache.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c.Retain(ctx, "g")
	c.Put(ctx, key("g", 1), analysis(1))
	if _, ok := c.Get(ctx, key("g", 1)); !ok {
		t.Error("the new cache does not work")
	}
	if !strings.Contains(logs.String(), "unreadable") {
		t.Errorf("no warning:\n%s", logs.String())
	}
}

// Gets, Puts and Retains at once (run with -race).
func TestConcurrent(t *testing.T) {
	c := open(t, filepath.Join(t.TempDir(), "r.db"), resultcache.Config{MaxBytes: 256 << 10, FlushDelay: time.Millisecond})
	c.Retain(ctx, "g0")
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 300 {
				gen := fmt.Sprint("g", i/100)
				if w == 0 && i%100 == 0 {
					c.Retain(ctx, gen)
				}
				c.Put(ctx, key(gen, w*1000+i), analysis(i))
				if a, ok := c.Get(ctx, key(gen, w*1000+i)); ok && a.Metadata.MalwareFamily != fmt.Sprint("Family.", i) {
					t.Errorf("record %d: got %q", i, a.Metadata.MalwareFamily)
				}
			}
		})
	}
	wg.Wait()
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Generation != "g2" {
		t.Errorf("stats %+v, want generation g2", st)
	}
}

// kill -9 of a process writing to the cache: the next Open finds a usable
// cache holding every record committed before the kill.
func TestKilledProcessLeavesAUsableCache(t *testing.T) {
	path := filepath.Join(t.TempDir(), resultcache.DefaultFile)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "RESULTCACHE_TEST_CHILD="+path)
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
	if err != nil || strings.TrimSpace(line) != "committed" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child said %q, %v; stderr:\n%s", line, err, stderr.String())
	}
	// The child goes on writing: the kill lands during its commits.
	time.Sleep(20 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	c := open(t, path, resultcache.Config{})
	st := c.Stats()
	if st.Generation != "killed" || st.Records < childCommitted {
		t.Fatalf("stats after the kill: %+v, want generation killed and at least %d records", st, childCommitted)
	}
	for i := range childCommitted {
		got, ok := c.Get(ctx, key("killed", i))
		if !ok || got.Metadata.MalwareFamily != fmt.Sprint("Family.", i) {
			t.Fatalf("record %d after the kill: %v %+v", i, ok, got)
		}
	}
	// Still a working cache: new records, a new generation.
	c.Put(ctx, key("killed", -1), analysis(-1))
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get(ctx, key("killed", -1)); !ok {
		t.Error("a record put after the kill is missing")
	}
	c.Retain(ctx, "next")
	if st := c.Stats(); st.Records != 0 || st.Generation != "next" {
		t.Errorf("stats after Retain: %+v", st)
	}
}

const childCommitted = 500

// runChild is the killed process: it commits childCommitted records, says
// "committed", and puts more until it is killed.
func runChild(path string) {
	c, err := resultcache.Open(path, resultcache.Config{FlushDelay: time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c.Retain(ctx, "killed")
	for i := range childCommitted {
		c.Put(ctx, key("killed", i), analysis(i))
	}
	if err := c.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("committed")
	for i := childCommitted; ; i++ {
		c.Put(ctx, key("killed", i), analysis(i))
		if i%50 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}
