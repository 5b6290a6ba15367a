package psengine_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gabriel-vasile/mimetype"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
)

// countZeros is the "scan" of the overhead benchmark: it reads every byte.
func countZeros(b []byte) int { return bytes.Count(b, []byte{0}) }

var zeroScanner = psengine.ScannerFunc(func(_ context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	b, err := a.Bytes()
	if err != nil {
		return psengine.Analysis{}, err
	}
	if countZeros(b) > len(b) {
		return psengine.Analysis{Verdict: psengine.Malicious}, nil
	}
	return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.5}, nil
})

func dataURIs(b *testing.B, n, size int) []string {
	b.Helper()
	uris := make([]string, n)
	for i := range uris {
		buf := make([]byte, size)
		_, _ = rand.Read(buf)
		uris[i] = "data:application/octet-stream;base64," + base64.StdEncoding.EncodeToString(buf)
	}
	return uris
}

// handLoop is what a scanner author would write without psengine: decode,
// hash, identify, scan.
func handLoop(b *testing.B, uris []string) {
	defer psenginetest.MeasureCPU(b)()
	for i := 0; b.Loop(); i++ {
		handOne(b, uris[i%len(uris)])
	}
}

// handOne is what a scanner author would write without psengine: decode,
// hash, identify, scan.
func handOne(b *testing.B, uri string) {
	payload := uri[strings.IndexByte(uri, ',')+1:]
	data, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256(data)
	mt := mimetype.Detect(data)
	if countZeros(data) > len(data) || sum[0] == 0 && mt == nil {
		b.Fatal("impossible")
	}
}

func engineLoop(b *testing.B, uris []string) {
	e := psengine.New(zeroScanner, benchDirs(b))
	defer e.Shutdown(context.Background())
	ctx := context.Background()
	defer psenginetest.MeasureCPU(b)()
	for i := 0; b.Loop(); i++ {
		res, err := e.Analyze(ctx, uris[i%len(uris)])
		if err != nil || res.Analysis.Verdict != psengine.Benign {
			b.Fatal(err, res.Analysis)
		}
	}
}

func benchDirs(b *testing.B) psengine.Option {
	d := b.TempDir()
	return psengine.WithDirs(envdirsFor(d))
}

// BenchmarkOverhead: Analyze of 4 KiB data: artifacts against the hand
// loop. Target: at most 1.35x, CPU time (compare the cpu-ns/op of the two).
func BenchmarkOverhead(b *testing.B) {
	uris := dataURIs(b, 64, 4096)
	b.Run("hand-loop", func(b *testing.B) { handLoop(b, uris) })
	b.Run("engine", func(b *testing.B) { engineLoop(b, uris) })
}

// BenchmarkOverheadPaired runs one hand-loop artifact and one engine
// artifact per iteration and reports engine/hand-loop wall time as
// "x-baseline", so both halves see the same machine load.
func BenchmarkOverheadPaired(b *testing.B) {
	uris := dataURIs(b, 64, 4096)
	e := psengine.New(zeroScanner, benchDirs(b))
	defer e.Shutdown(context.Background())
	ctx := context.Background()
	var hand, eng time.Duration
	for i := 0; b.Loop(); i++ {
		uri := uris[i%len(uris)]
		t0 := time.Now()
		handOne(b, uri)
		t1 := time.Now()
		if res, err := e.Analyze(ctx, uri); err != nil || res.Analysis.Verdict != psengine.Benign {
			b.Fatal(err, res.Analysis)
		}
		eng += time.Since(t1)
		hand += t1.Sub(t0)
	}
	b.ReportMetric(float64(eng)/float64(hand), "x-baseline")
	b.ReportMetric(float64(hand.Nanoseconds())/float64(b.N), "hand-ns/op")
	b.ReportMetric(float64(eng.Nanoseconds())/float64(b.N), "engine-ns/op")
}

// cpuScanner burns CPU in proportion to the artifact: 200 rounds of sha256.
var cpuScanner = psengine.ScannerFunc(func(_ context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	b, err := a.Bytes()
	if err != nil {
		return psengine.Analysis{}, err
	}
	sum := sha256.Sum256(b)
	for range 2000 {
		sum = sha256.Sum256(sum[:])
	}
	if sum[0] == 0 && sum[1] == 0 && sum[2] == 0 && sum[3] == 0 {
		return psengine.Analysis{Verdict: psengine.Suspicious}, nil
	}
	return psengine.Analysis{Verdict: psengine.Unknown}, nil
})

func workersLoop(b *testing.B, workers int, uris []string) {
	e := psengine.New(cpuScanner, benchDirs(b), psengine.WithWorkers(workers))
	defer e.Shutdown(context.Background())
	for b.Loop() {
		for _, r := range e.AnalyzeAll(context.Background(), uris) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
}

// BenchmarkWorkers: 1,000 small artifacts with a CPU-bound scanner.
func BenchmarkWorkers(b *testing.B) {
	uris := dataURIs(b, 1000, 256)
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", n), func(b *testing.B) { workersLoop(b, n, uris) })
	}
}

// BenchmarkWorkersSpeedup answers the 1,000 artifacts with WithWorkers(1)
// then WithWorkers(2) in each iteration and reports how much faster two
// workers are as "x-speedup" (target >= 1.6 on 2 cores).
func BenchmarkWorkersSpeedup(b *testing.B) {
	uris := dataURIs(b, 1000, 256)
	one := psengine.New(cpuScanner, benchDirs(b), psengine.WithWorkers(1))
	two := psengine.New(cpuScanner, benchDirs(b), psengine.WithWorkers(2))
	defer one.Shutdown(context.Background())
	defer two.Shutdown(context.Background())
	var d1, d2 time.Duration
	for b.Loop() {
		for _, w := range []struct {
			e *psengine.Engine
			d *time.Duration
		}{{one, &d1}, {two, &d2}} {
			t0 := time.Now()
			for _, r := range w.e.AnalyzeAll(context.Background(), uris) {
				if r.Err != nil {
					b.Fatal(r.Err)
				}
			}
			*w.d += time.Since(t0)
		}
	}
	b.ReportMetric(float64(d1)/float64(d2), "x-speedup")
}

// sampleBountyJSON is a typical bounty of about 1 KiB.
var sampleBountyJSON = []byte(`{"id":123456789012345678,"artifact_type":"FILE","artifact_uri":"https://storage.example.test/artifacts/5b9a3f0c-7d2e-4a61-9e8b-1c2d3e4f5a6b?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20210219%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20210219T101347Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","sha256":"275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f","mimetype":"application/x-dosexec","expiration":"2021-02-19T10:13:47.036168","response_url":"https://api.example.test/v3/consumer/submission/12345/assertions/67890","rules":{"min_allowed_bid":62500000000000000,"max_allowed_bid":1000000000000000000},"phase":"assertion","metadata":{"sha256":"275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f","md5":"44d88612fea8a8f36de82e1278abb02f","sha1":"3395856ce81f2b7382dee72602f798b642f14140","size":68,"filename":"sample.exe","tags":["upload","public"]},"duration":30,"tasked_at":"2021-02-19T10:12:47.036168","community":"default","extended_type":"EICAR virus test files"}`)

// plainBounty is what a hand-written decoder would use.
type plainBounty struct {
	ID           json.Number     `json:"id"`
	ArtifactType string          `json:"artifact_type"`
	ArtifactURI  string          `json:"artifact_uri"`
	SHA256       string          `json:"sha256"`
	MIMEType     string          `json:"mimetype"`
	Expiration   string          `json:"expiration"`
	ResponseURL  string          `json:"response_url"`
	Rules        map[string]any  `json:"rules"`
	Phase        string          `json:"phase"`
	Metadata     json.RawMessage `json:"metadata"`
	Duration     json.Number     `json:"duration"`
	TaskedAt     string          `json:"tasked_at"`
}

// BenchmarkParseBounty decodes the same 1 KiB bounty as a plain struct
// ("plain") and with ParseBounty, one side per sub-benchmark so that each
// can run in a process of its own (to compare CPU time, e.g. under
// /usr/bin/time with -benchtime Nx).
func BenchmarkParseBounty(b *testing.B) {
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var p plainBounty
			if err := json.Unmarshal(sampleBountyJSON, &p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ParseBounty", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := psengine.ParseBounty(sampleBountyJSON); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkParseBountyPaired reports ParseBounty's time against a plain
// struct decode of the same 1 KiB bounty as "x-baseline".
func BenchmarkParseBountyPaired(b *testing.B) {
	var plain, ours time.Duration
	for b.Loop() {
		t0 := time.Now()
		var p plainBounty
		if err := json.Unmarshal(sampleBountyJSON, &p); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := psengine.ParseBounty(sampleBountyJSON); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(t1)
		plain += t1.Sub(t0)
	}
	b.ReportMetric(float64(ours)/float64(plain), "x-baseline")
}

// BenchmarkLocalFiles: Analyze of 1 KiB local files (paths) against the hand
// loop (read the file, sha256, mimetype, the same scan). Target: at most
// 1.5x, CPU time.
func BenchmarkLocalFiles(b *testing.B) {
	dir := b.TempDir()
	paths := make([]string, 64)
	for i := range paths {
		buf := make([]byte, 1024)
		_, _ = rand.Read(buf)
		paths[i] = filepath.Join(dir, fmt.Sprintf("f%02d", i))
		if err := os.WriteFile(paths[i], buf, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("hand-loop", func(b *testing.B) {
		defer psenginetest.MeasureCPU(b)()
		for i := 0; b.Loop(); i++ {
			data, err := os.ReadFile(paths[i%len(paths)])
			if err != nil {
				b.Fatal(err)
			}
			sum := sha256.Sum256(data)
			mt := mimetype.Detect(data)
			if countZeros(data) > len(data) || sum[0] == 0 && mt == nil {
				b.Fatal("impossible")
			}
		}
	})
	b.Run("engine", func(b *testing.B) { engineLoop(b, paths) })
}

// BenchmarkAnalyzeAll: 10,000 small artifacts with one worker, AnalyzeAll
// against a plain loop of Analyze. Target: at most 1.15x.
func BenchmarkAnalyzeAll(b *testing.B) {
	uris := dataURIs(b, 10000, 64)
	e := psengine.New(zeroScanner, benchDirs(b))
	defer e.Shutdown(context.Background())
	ctx := context.Background()
	var collected []psengine.Result
	b.Run("loop", func(b *testing.B) { // what AnalyzeAll does, as a plain loop
		defer psenginetest.MeasureCPU(b)()
		for b.Loop() {
			results := make([]psengine.Result, 0, len(uris))
			for _, uri := range uris {
				res, err := e.Analyze(ctx, uri)
				if err != nil || !res.Answered {
					b.Fatal(err)
				}
				results = append(results, res)
			}
			collected = results
		}
	})
	b.Run("AnalyzeAll", func(b *testing.B) {
		defer psenginetest.MeasureCPU(b)()
		for b.Loop() {
			collected = e.AnalyzeAll(ctx, uris)
			for _, res := range collected {
				if res.Err != nil || !res.Answered {
					b.Fatal(res.Err)
				}
			}
		}
	})
}

// BenchmarkProcessBackend: Analyze of small data: artifacts with the scans
// in a warm child process (WithProcessWorkers) against in-process, one
// worker each. The per-bounty overhead of the process backend is the
// difference of the two ns/op (wall) and cpu-ns/op (CPU time of the parent
// and its children: the children are reaped before the CPU is read).
func BenchmarkProcessBackend(b *testing.B) {
	uris := dataURIs(b, 64, 256)
	for _, backend := range []string{"local", "process"} {
		b.Run(backend, func(b *testing.B) {
			opts := []psengine.Option{benchDirs(b)}
			if backend == "process" {
				opts = append(opts, psenginetest.ProcessWorkers(b, psengine.ProcessConfig{}))
			}
			e := psengine.New(zeroScanner, opts...)
			ctx := context.Background()
			if err := e.Start(ctx); err != nil {
				b.Fatal(err)
			}
			stop := psenginetest.MeasureCPU(b)
			for i := 0; b.Loop(); i++ {
				if res, err := e.Analyze(ctx, uris[i%len(uris)]); err != nil || !res.Answered {
					b.Fatal(err)
				}
			}
			if err := e.Shutdown(ctx); err != nil { // reaps the children: their CPU counts
				b.Fatal(err)
			}
			stop()
		})
	}
}

// BenchmarkChildReplaced: a child dies in a scan; how long until its
// replacement has answered the next bounty, from the start of the fatal
// scan, with the sandbox (the default) and without. Reports the median as
// "ms-replaced" (target: at most 50).
func BenchmarkChildReplaced(b *testing.B) {
	for _, sb := range []string{"sandbox", "nosandbox"} {
		b.Run(sb, func(b *testing.B) { childReplaced(b, psengine.SandboxConfig{Off: sb == "nosandbox"}) })
	}
}

func childReplaced(b *testing.B, sandbox psengine.SandboxConfig) {
	dying := psengine.ScannerFunc(func(_ context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
		if b, _ := a.Bytes(); string(b) == "exit" {
			os.Exit(9)
		}
		return psengine.Analysis{Verdict: psengine.Unknown}, nil
	})
	e := psengine.New(dying, benchDirs(b), psenginetest.ProcessWorkers(b, psengine.ProcessConfig{Sandbox: sandbox}))
	defer e.Shutdown(context.Background())
	ctx := context.Background()
	if err := e.Start(ctx); err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	for b.Loop() {
		start := time.Now()
		if res, _ := e.Analyze(ctx, "data:,exit"); !errors.Is(res.Err, psengine.ErrWorkerDied) {
			b.Fatalf("the dying scan: %v", res.Err)
		}
		if res, err := e.Analyze(ctx, "data:,fine"); err != nil || !res.Answered {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2])/float64(time.Millisecond), "ms-replaced")
}

// BenchmarkSlowReceivers: one worker and a scanner that takes 10 ms, so
// the engine can answer 100 bounties a second at most; answers go to a
// receiver that takes 0, 100 ms or 1 s to answer each POST. Each iteration
// submits 300 bounties at once (in-memory broker) and waits for every
// answer. Reported: the rate at which answers arrive, from the first to the
// last ("answers/s"; a receiver's latency delays them all alike, it must
// not slow them), and as a fraction of the 100/s the scanner allows
// ("x-scan-rate"; target within 10% of 1 whatever the receiver's latency:
// a slow receiver holds no worker).
func BenchmarkSlowReceivers(b *testing.B) {
	for _, latency := range []time.Duration{0, 100 * time.Millisecond, time.Second} {
		b.Run(fmt.Sprint("latency=", latency), func(b *testing.B) {
			const n = 300
			var answered atomic.Int64
			var first, last atomic.Int64 // arrival times (UnixNano) of the first and last answers
			all := make(chan struct{})
			receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				time.Sleep(latency) // the receiver's latency
				now := time.Now().UnixNano()
				first.CompareAndSwap(0, now)
				if answered.Add(1) == n {
					last.Store(now)
					close(all)
				}
			}))
			defer receiver.Close()
			scanner := psengine.ScannerFunc(func(ctx context.Context, _ psengine.Env, _ psengine.Artifact) (psengine.Analysis, error) {
				t := time.NewTimer(10 * time.Millisecond) // the scan's work
				defer t.Stop()
				select {
				case <-ctx.Done():
					return psengine.Analysis{}, ctx.Err()
				case <-t.C:
				}
				return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.5}, nil
			})
			var span time.Duration
			for b.Loop() {
				answered.Store(0)
				first.Store(0)
				all = make(chan struct{})
				e := psengine.New(scanner, benchDirs(b), psengine.WithWorkers(1))
				bounties := make([]psengine.Bounty, n)
				for i := range bounties {
					bounties[i] = psenginetest.Bounty([]byte(fmt.Sprint("artifact ", i)), psenginetest.WithID(strconv.Itoa(i+1)),
						psenginetest.WithResponseURL(receiver.URL), psenginetest.WithExpiration(time.Now().Add(time.Hour)))
				}
				if err := e.Start(context.Background()); err != nil {
					b.Fatal(err)
				}
				for _, bt := range bounties {
					if err := e.Submit(context.Background(), bt); err != nil {
						b.Fatal(err)
					}
				}
				select {
				case <-all:
				case <-time.After(time.Minute):
					b.Fatalf("%d of %d answered", answered.Load(), n)
				}
				span += time.Duration(last.Load() - first.Load())
				if err := e.Shutdown(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			rate := float64((n-1)*b.N) / span.Seconds()
			b.ReportMetric(rate, "answers/s")
			b.ReportMetric(rate/100, "x-scan-rate")
		})
	}
}
