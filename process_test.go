//go:build linux

package psengine_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/fetch"
	"github.com/polyswarm/psengine/pipeline"
	"github.com/polyswarm/psengine/psenginetest"
)

// crashy misbehaves as its artifact says, and otherwise answers benign
// with its process id (metadata "pid"), so that tests see where it ran.
var crashy = psengine.ScannerFunc(func(ctx context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	b, _ := a.Bytes()
	switch string(b) {
	case "panic in a goroutine":
		go func() { panic("scanner bug in a goroutine") }()
		time.Sleep(time.Minute)
	case "exit":
		os.Exit(7)
	case "sigkill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Minute)
	case "sigterm": // as a service manager stopping the whole control group
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		_ = syscall.Kill(os.Getpid(), syscall.SIGINT)
		time.Sleep(200 * time.Millisecond)
	case "hang":
		select {} // ignores ctx
	case "allocate":
		hog := make([][]byte, 0, 64)
		for range 64 { // 512 MiB, touched
			chunk := make([]byte, 8<<20)
			for i := 0; i < len(chunk); i += 4096 {
				chunk[i] = 1
			}
			hog = append(hog, chunk)
		}
		time.Sleep(time.Minute)
		return psengine.Analysis{Verdict: psengine.Malicious, Metadata: psengine.Metadata{MalwareFamily: fmt.Sprint(len(hog))}}, nil
	}
	return psengine.Analysis{Verdict: psengine.Benign, Metadata: psengine.Metadata{Extra: map[string]any{"pid": os.Getpid()}}}, nil
})

func pidOf(t *testing.T, res psengine.Result) int {
	t.Helper()
	switch n := res.Analysis.Metadata.Extra["pid"].(type) {
	case int: // scanned in this process
		return n
	case float64: // from a child: metadata crosses as the JSON it is delivered as
		return int(n)
	}
	t.Fatalf("no pid in %+v (err %v)", res.Analysis, res.Err)
	return 0
}

// Each misbehaving scan costs only its own bounty: answered unknown with a
// typed error; every other bounty is answered in a child (never in the
// parent), and when the engine is shut down no child is left.
func TestProcessBackendSurvivesCrashes(t *testing.T) {
	var mu sync.Mutex
	var hooked []error
	e := newEngine(t, crashy, psengine.WithWorkers(2),
		psenginetest.ProcessWorkers(t, psengine.ProcessConfig{MaxChildMemory: 256 << 20}),
		psengine.OnError(func(_ context.Context, res psengine.Result) {
			mu.Lock()
			hooked = append(hooked, res.Err)
			mu.Unlock()
		}))
	bad := map[string]error{
		"panic in a goroutine": psengine.ErrWorkerDied,
		"exit":                 psengine.ErrWorkerDied,
		"sigkill":              psengine.ErrWorkerDied,
		"allocate":             psengine.ErrMemoryLimit,
	}
	var inputs []string
	for name := range bad {
		inputs = append(inputs, name, "fine "+name)
	}
	uris := make([]string, len(inputs))
	for i, in := range inputs {
		uris[i] = psenginetest.DataURI([]byte(in))
	}
	pids := map[int]bool{}
	for i, res := range e.AnalyzeAll(context.Background(), uris) {
		if want, ok := bad[inputs[i]]; ok {
			if !errors.Is(res.Err, want) || !res.Answered || res.Analysis.Verdict != psengine.Unknown {
				t.Errorf("%s: %v, %+v; want an unknown answer for %v", inputs[i], res.Err, res.Analysis, want)
			}
			continue
		}
		if res.Err != nil || res.Analysis.Verdict != psengine.Benign {
			t.Errorf("%s: %v, %+v; want benign", inputs[i], res.Err, res.Analysis)
			continue
		}
		pids[pidOf(t, res)] = true
	}
	// A scan that hangs, with a deadline of its own (the others have all
	// the time they need, however loaded the machine): its child is
	// killed ScanGrace after the deadline.
	hang := psenginetest.Bounty([]byte("hang"), psenginetest.WithExpiration(time.Now().Add(psengine.DefaultDeliveryMargin+time.Second)))
	if res, _ := e.AnalyzeBounty(context.Background(), hang); !errors.Is(res.Err, psengine.ErrTimeout) || res.Analysis.Verdict != psengine.Unknown {
		t.Errorf("hang: %v, %+v; want an unknown answer for ErrTimeout", res.Err, res.Analysis)
	}
	if res := psenginetest.Analyze(t, e, []byte("fine after the hang")); res.Err != nil || res.Analysis.Verdict != psengine.Benign {
		t.Errorf("after the hang: %v, %+v; want benign from a new child", res.Err, res.Analysis)
	} else {
		pids[pidOf(t, res)] = true
	}
	if pids[os.Getpid()] {
		t.Errorf("a scan ran in the parent")
	}
	mu.Lock()
	if len(hooked) != len(bad)+1 {
		t.Errorf("%d errors reported to the hooks, want %d: %v", len(hooked), len(bad)+1, hooked)
	}
	mu.Unlock()
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for pid := range pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			t.Errorf("child %d still exists after Shutdown (running or a zombie)", pid)
		}
	}
	if kids := childrenOf(os.Getpid()); len(kids) != 0 {
		t.Errorf("processes left behind: %v", kids)
	}
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+2:])
		if f := strings.Fields(rest); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

// With one worker and at most two tasks per child, eight scans run in at
// least four children.
// A worker child ignores SIGTERM and SIGINT while its parent lives (a
// service manager signals the whole control group at stop): the scan it
// runs is answered, and the child serves on.
func TestProcessBackendChildIgnoresStopSignals(t *testing.T) {
	e := newEngine(t, crashy, psengine.WithWorkers(1), psenginetest.ProcessWorkers(t, psengine.ProcessConfig{}))
	first := psenginetest.Analyze(t, e, []byte("sigterm"))
	if first.Err != nil || first.Analysis.Verdict != psengine.Benign {
		t.Fatalf("the scan of a child that got SIGTERM: %+v, %v; want benign", first.Analysis, first.Err)
	}
	second := psenginetest.Analyze(t, e, []byte("after"))
	if a, b := pidOf(t, first), pidOf(t, second); a != b || a == os.Getpid() {
		t.Errorf("scanned in pid %d, then %d (the parent is %d): want the same child", a, b, os.Getpid())
	}
}

func TestProcessBackendMaxTasksPerChild(t *testing.T) {
	e := newEngine(t, crashy, psengine.WithWorkers(1), psenginetest.ProcessWorkers(t, psengine.ProcessConfig{MaxTasksPerChild: 2}))
	pids := map[int]int{}
	for i := range 8 {
		res := psenginetest.Analyze(t, e, fmt.Appendf(nil, "artifact %d", i))
		pids[pidOf(t, res)]++
	}
	if len(pids) < 4 || pids[os.Getpid()] > 0 {
		t.Errorf("scans per pid %v: want at least 4 children, none in the parent (%d)", pids, os.Getpid())
	}
	for pid, n := range pids {
		if n > 2 {
			t.Errorf("child %d scanned %d artifacts, more than 2", pid, n)
		}
	}
}

// A value EngineSetup stores that cannot cross to a child is an error at
// Start, naming its key, not a surprise at scan time.
func TestProcessBackendRefusesLocalOnlyEnv(t *testing.T) {
	s := struct {
		psengine.Scanner
		psengine.EngineSetup
	}{crashy, setupFunc(func(_ context.Context, env psengine.Env) (psengine.Env, error) {
		return localOnlyKey.With(env, localOnly{n: 1}), nil
	})}
	e := newEngine(t, s, psenginetest.ProcessWorkers(t, psengine.ProcessConfig{}))
	err := e.Start(context.Background())
	if !errors.Is(err, psengine.ErrSetup) || !strings.Contains(err.Error(), "test.localOnly") || !strings.Contains(err.Error(), "unexported field n") {
		t.Fatalf("Start = %v; want ErrSetup naming the key and the field", err)
	}
}

type localOnly struct{ n int }

var localOnlyKey = psengine.NewKey[localOnly]("test.localOnly")

type setupFunc func(context.Context, psengine.Env) (psengine.Env, error)

func (f setupFunc) SetupEngine(ctx context.Context, env psengine.Env) (psengine.Env, error) {
	return f(ctx, env)
}

// A runtime.Goexit in a child's scan is a failed scan; the child goes on.
func TestProcessBackendGoexit(t *testing.T) {
	s := psengine.ScannerFunc(func(_ context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
		if b, _ := a.Bytes(); string(b) == "goexit" {
			runtime.Goexit()
		}
		return psengine.Analysis{Verdict: psengine.Benign, Metadata: psengine.Metadata{Extra: map[string]any{"pid": os.Getpid()}}}, nil
	})
	e := newEngine(t, s, psenginetest.ProcessWorkers(t, psengine.ProcessConfig{}))
	res, err := e.Analyze(context.Background(), "data:,goexit")
	if !errors.Is(err, psengine.ErrScan) || !errors.Is(err, pipeline.ErrGoexit) || res.Analysis.Verdict != psengine.Unknown {
		t.Fatalf("Goexit: %v, %+v", err, res.Analysis)
	}
	first := pidOf(t, psenginetest.Analyze(t, e, []byte("a")))
	if second := pidOf(t, psenginetest.Analyze(t, e, []byte("b"))); first != second || first == os.Getpid() {
		t.Errorf("pids %d then %d (parent %d): want the same child", first, second, os.Getpid())
	}
}

// At start the engine removes the temp files a crashed run left under its
// prefix (their process is gone), and only those.
func TestStartRemovesStaleTempFiles(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	dead := cmd.ProcessState.Pid()
	stale := filepath.Join(dir, fmt.Sprintf("%s%d-42", fetch.DefaultTempPrefix, dead))
	live := filepath.Join(dir, fmt.Sprintf("%s%d-42", fetch.DefaultTempPrefix, os.Getpid()))
	for _, f := range []string{stale, live} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := fetch.Remote()
	p.TempDir = dir
	e := newEngine(t, marker, psengine.WithFetchPolicy(p))
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("a dead run's temp file is still there: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a live process's temp file was removed: %v", err)
	}
}

// After an update, children move to the new Env: the next scans run in
// children given it.
func TestProcessBackendUpdate(t *testing.T) {
	v := &versioned{}
	e := newEngine(t, v, psenginetest.ProcessWorkers(t, psengine.ProcessConfig{}))
	if res := psenginetest.Analyze(t, e, []byte("a")); res.Analysis.Metadata.MalwareFamily != "v1" {
		t.Fatalf("before: %+v", res.Analysis.Metadata)
	}
	v.next.Store("v2")
	if err := e.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		res := psenginetest.Analyze(t, e, fmt.Appendf(nil, "b%d", i))
		if m := res.Analysis.Metadata; m.MalwareFamily != "v2" || m.Scanner.SignaturesVersion != "v2" {
			t.Errorf("after the update: %+v", m)
		}
	}
}

// A child that never gets ready fails Start after StartTimeout, instead of
// holding it forever.
func TestProcessBackendStartTimeout(t *testing.T) {
	if psenginetest.InChild() {
		time.Sleep(time.Hour) // a child stuck before it reaches New
	}
	e := newEngine(t, crashy, psenginetest.ProcessWorkers(t, psengine.ProcessConfig{StartTimeout: time.Second}))
	start := time.Now()
	err := e.Start(context.Background())
	if !errors.Is(err, psengine.ErrSetup) || !strings.Contains(err.Error(), "did not set up within 1s") {
		t.Fatalf("Start = %v, want ErrSetup saying the child did not set up in time", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("Start took %v", took)
	}
}

// contentSums reads its artifact through Bytes, Open and Path and answers
// with the sha256 of each, the path Path gave and its process id.
var contentSums = psengine.ScannerFunc(func(ctx context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	sum := func(r io.Reader) string {
		h := sha256.New()
		_, _ = io.Copy(h, r)
		return hex.EncodeToString(h.Sum(nil))
	}
	b, err := a.Bytes()
	if err != nil {
		return psengine.Analysis{}, err
	}
	r, err := a.Open()
	if err != nil {
		return psengine.Analysis{}, err
	}
	defer r.Close()
	p, err := a.Path()
	if err != nil {
		return psengine.Analysis{}, err
	}
	f, err := os.Open(p)
	if err != nil {
		return psengine.Analysis{}, err
	}
	defer f.Close()
	return psengine.Analysis{Verdict: psengine.Benign, Metadata: psengine.Metadata{Extra: map[string]any{
		"bytes": sum(bytes.NewReader(b)), "open": sum(r), "path": sum(f), "path_name": p, "pid": os.Getpid(),
	}}}, nil
})

// Whatever its size, a local file scanned in a child reads the same through
// Bytes, Open and Path, sandboxed or not. A small one (64 KiB or less)
// crosses in the scan request itself, so its Path is a temp file of the
// child's; a larger one crosses as its file: the file itself for an
// unsandboxed child, a link staged in its own directory for a sandboxed one.
func TestProcessBackendArtifactContent(t *testing.T) {
	for _, sandboxed := range []bool{false, true} {
		t.Run(fmt.Sprintf("sandboxed=%v", sandboxed), func(t *testing.T) {
			cfg := psengine.ProcessConfig{Sandbox: psengine.SandboxConfig{Off: !sandboxed}}
			e := newEngine(t, contentSums, psenginetest.ProcessWorkers(t, cfg))
			dir := t.TempDir()
			inline := 64 << 10 // the largest file that crosses in the scan request
			if sandboxed {
				inline = 1 << 20
			}
			for _, size := range []int{0, 1000, 64 << 10, 64<<10 + 1, 300 << 10, 1 << 20, 1<<20 + 1} {
				data := make([]byte, size)
				_, _ = rand.Read(data)
				path := filepath.Join(dir, fmt.Sprintf("sample-%d.exe", size))
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
				res, err := e.Analyze(context.Background(), path)
				if err != nil {
					t.Fatalf("%d bytes: %v", size, err)
				}
				if pid := pidOf(t, res); pid == os.Getpid() {
					t.Fatalf("%d bytes: scanned in the parent", size)
				}
				want := sha256.Sum256(data)
				x := res.Analysis.Metadata.Extra
				for _, how := range []string{"bytes", "open", "path"} {
					if x[how] != hex.EncodeToString(want[:]) {
						t.Errorf("%d bytes: the content read through %s has sha256 %v, want %x", size, how, x[how], want)
					}
				}
				name, _ := x["path_name"].(string)
				switch {
				case size <= inline && (name == path || strings.HasSuffix(name, "-"+filepath.Base(path))):
					t.Errorf("%d bytes: Path in the child %s: want a temp file of the child's (the content crossed inline)", size, name)
				case size > inline && !sandboxed && name != path:
					t.Errorf("%d bytes: Path in the unsandboxed child %s, want the file itself %s", size, name, path)
				case size > inline && sandboxed && (name == path || !strings.HasSuffix(name, "-"+filepath.Base(path))):
					t.Errorf("%d bytes: Path in the sandboxed child %s, want a link staged for it (N-%s)", size, name, filepath.Base(path))
				}
			}
		})
	}
}
