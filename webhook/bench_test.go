package webhook_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/localq"
	"github.com/polyswarm/psengine/psenginetest"
	"github.com/polyswarm/psengine/webhook"
)

// kibBounty is a realistic bounty of 1 KiB: the usual fields, a little
// metadata, and an artifact URI presigned the way object stores do (a long
// query), which is what makes real bounties about this size.
func kibBounty(id int, artifactURI, responseURL string, expiration time.Time) []byte {
	head := fmt.Sprintf(`{"id":%d,"artifact_type":"FILE","artifact_uri":"%s?X-Amz-Algorithm=AWS4-HMAC-SHA256`+
		`&X-Amz-Credential=AKIAEXAMPLE%%2F20210219%%2Fus-east-1%%2Fs3%%2Faws4_request&X-Amz-Date=20210219T101347Z`+
		`&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=`, id, artifactURI)
	tail := fmt.Sprintf(`","sha256":%q,"mimetype":"application/x-dosexec","expiration":%q,"response_url":%q,`+
		`"rules":{"min_allowed_bid":62500000000000000,"max_allowed_bid":1000000000000000000},"phase":"assertion",`+
		`"duration":300,"metadata":{"filename":"sample.exe","size":1024,"tags":["pe","x86"]}}`,
		strings.Repeat("ab", 32), expiration.UTC().Format("2006-01-02T15:04:05.000000"), responseURL)
	return []byte(head + strings.Repeat("0", max(0, 1024-len(head)-len(tail))) + tail)
}

// discardWriter is the cheapest http.ResponseWriter, shared by both sides
// of the comparison.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

var rootURL = &url.URL{Path: "/"}

func benchRequest(body []byte, sig, delivery string) *http.Request {
	return &http.Request{
		Method: http.MethodPost, URL: rootURL, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{
			webhook.HeaderEvent:     {"bounty"},
			webhook.HeaderSignature: {sig},
			webhook.HeaderDelivery:  {delivery},
		},
		Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
	}
}

// plainBounty is a bounty as a plain struct, with no parsing of its own.
type plainBounty struct {
	ID           json.Number     `json:"id"`
	ArtifactType string          `json:"artifact_type"`
	ArtifactURI  string          `json:"artifact_uri"`
	SHA256       string          `json:"sha256"`
	MIMEType     string          `json:"mimetype"`
	Expiration   string          `json:"expiration"`
	ResponseURL  string          `json:"response_url"`
	Rules        json.RawMessage `json:"rules"`
	Phase        string          `json:"phase"`
	Duration     json.Number     `json:"duration"`
	Metadata     json.RawMessage `json:"metadata"`
}

// minimalHandler is the baseline: it only checks the HMAC and decodes the
// JSON, into decode's result: the psengine.Bounty the real handler needs
// (psengine.ParseBounty), a plain struct, or a map.
func minimalHandler(secret []byte, decode func() any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, webhook.DefaultMaxBody))
		if err != nil {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		got, err := hex.DecodeString(r.Header.Get(webhook.HeaderSignature))
		if err != nil || !hmac.Equal(mac.Sum(nil), got) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if err := json.Unmarshal(body, decode()); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}
}

// BenchmarkIntake: signed 1 KiB bounties through the handler into an
// in-process queue (drained by a no-op consumer), against a minimal handler
// that only checks the HMAC and decodes the JSON. The target is at least
// 0.7x the baseline's throughput, in CPU time (compare cpu-ns/op: the
// process's CPU, the queue's consumer included).
func BenchmarkIntake(b *testing.B) {
	body := kibBounty(1, "https://artifacts.example/a", "https://api.example/answer", time.Now().Add(time.Hour))
	sig := webhook.Sign(secret, body)
	if len(body) != 1024 {
		b.Fatalf("bounty of %d bytes, want 1024", len(body))
	}

	handler := func(b *testing.B) (http.Handler, func()) {
		q := broker.NewMemory(broker.MemoryConfig{Capacity: 1 << 20})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { _ = q.Consume(ctx, func(context.Context, broker.Job) error { return nil }) })
		return newHandler(b, webhook.SubmitFunc(q.Submit)), func() { q.Close(); cancel(); wg.Wait() }
	}
	baseline := func(decode func() any) func(*testing.B) (http.Handler, func()) {
		return func(*testing.B) (http.Handler, func()) { return minimalHandler([]byte(secret), decode), func() {} }
	}
	cases := []struct {
		name string
		make func(*testing.B) (http.Handler, func())
	}{
		{"handler", handler},
		{"baseline-bounty", baseline(func() any { return new(psengine.Bounty) })},
		{"baseline-struct", baseline(func() any { return new(plainBounty) })},
		{"baseline-map", baseline(func() any { return new(map[string]any) })},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			h, stop := c.make(b)
			defer stop()
			w := &discardWriter{h: http.Header{}}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			i := 0
			defer psenginetest.MeasureCPU(b)()
			for b.Loop() {
				i++
				clear(w.h)
				h.ServeHTTP(w, benchRequest(body, sig, strconv.Itoa(i)))
				if w.code != http.StatusAccepted {
					b.Fatalf("status %d", w.code)
				}
			}
		})
		b.Run(c.name+"-parallel", func(b *testing.B) {
			h, stop := c.make(b)
			defer stop()
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			var n atomic.Int64
			defer psenginetest.MeasureCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				w := &discardWriter{h: http.Header{}}
				for pb.Next() {
					clear(w.h)
					h.ServeHTTP(w, benchRequest(body, sig, strconv.FormatInt(n.Add(1), 10)))
					if w.code != http.StatusAccepted {
						b.Errorf("status %d", w.code)
						return
					}
				}
			})
		})
	}
}

// BenchmarkIntakePaired takes one signed 1 KiB bounty through the handler
// (into an in-process queue drained by a no-op consumer) and one through
// each minimal baseline per iteration, so that all see the same machine
// load, and reports the handler's throughput as a fraction of each
// baseline's: "x-struct" (HMAC + decode into a plain struct) and "x-map"
// (into a map). Target: at least 0.7.
func BenchmarkIntakePaired(b *testing.B) {
	body := kibBounty(1, "https://artifacts.example/a", "https://api.example/answer", time.Now().Add(time.Hour))
	sig := webhook.Sign(secret, body)
	q := broker.NewMemory(broker.MemoryConfig{Capacity: 1 << 20})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = q.Consume(ctx, func(context.Context, broker.Job) error { return nil }) })
	defer func() { q.Close(); cancel(); wg.Wait() }()
	handlers := []http.Handler{
		newHandler(b, webhook.SubmitFunc(q.Submit)),
		minimalHandler([]byte(secret), func() any { return new(plainBounty) }),
		minimalHandler([]byte(secret), func() any { return new(map[string]any) }),
	}
	var took [3]time.Duration
	w := &discardWriter{h: http.Header{}}
	i := 0
	for b.Loop() {
		for j, h := range handlers {
			i++
			clear(w.h)
			req := benchRequest(body, sig, strconv.Itoa(i))
			t0 := time.Now()
			h.ServeHTTP(w, req)
			took[j] += time.Since(t0)
			if w.code != http.StatusAccepted {
				b.Fatalf("handler %d: status %d", j, w.code)
			}
		}
	}
	b.ReportMetric(float64(took[1])/float64(took[0]), "x-struct")
	b.ReportMetric(float64(took[2])/float64(took[0]), "x-map")
}

// BenchmarkEndToEnd: 64 concurrent senders POST signed bounties to the
// handler on a loopback server; the engine (default fetcher and deliverer)
// fetches each artifact from a local server, runs a no-op scan and POSTs
// the answer to a local response_url, with 64 workers (its work is I/O, as
// the senders' is). In the same run, the floor: the same
// senders make the three minimal HTTP exchanges a bounty needs (a POST
// answered 202, a GET of the 1 KiB artifact, a POST of the answer) on
// trivial loopback handlers. Reports bounties/s for both, their ratio as
// "x-floor" (target >= 0.6), and the p99 time to 202 of the engine's
// intake, from the first attempt, every 503 and retry included, with the
// number of 503s (the queue, the default 1024, full: retried 10ms later).
func BenchmarkEndToEnd(b *testing.B) {
	const senders = 64
	content := bytes.Repeat([]byte("A"), 1024)
	artifacts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(content) }))
	defer artifacts.Close()
	var answered atomic.Int64
	var allAnswered chan struct{}
	var target int64
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if answered.Add(1) == atomic.LoadInt64(&target) {
			close(allAnswered)
		}
	}))
	defer receiver.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	defer client.CloseIdleConnections()

	// send runs fn(i) for i in [0, n) on the senders.
	send := func(n int, fn func(i int)) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range senders {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
					fn(i)
				}
			})
		}
		wg.Wait()
	}
	post := func(url string, body []byte, header http.Header) int {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		for k, v := range header {
			req.Header[k] = v
		}
		res, err := client.Do(req)
		if err != nil {
			b.Error(err)
			return 0
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		return res.StatusCode
	}

	// The floor: three minimal exchanges per bounty.
	accept := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer accept.Close()
	answer := []byte(`{"verdict":"benign","bid":500000000000000000,"metadata":{}}`)
	floor := func(n int, bodies [][]byte) time.Duration {
		start := time.Now()
		send(n, func(i int) {
			post(accept.URL, bodies[i], nil)
			res, err := client.Get(artifacts.URL + "/artifact")
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			post(receiver.URL+"/answer", answer, nil)
		})
		return time.Since(start)
	}

	dir := b.TempDir()
	engine := psengine.New(psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
		return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.5}, nil
	}), psengine.WithWorkers(64), psengine.WithDirs(envdirs.Dirs{Home: dir, Temp: dir}),
		psengine.WithGetenv(func(string) string { return "" }))
	intake := httptest.NewServer(newHandler(b, engine))
	defer intake.Close()

	n := b.N
	bodies := make([][]byte, n)
	exp := time.Now().Add(10 * time.Minute)
	sha := psenginetest.SHA256(content)
	for i := range bodies {
		bodies[i] = bytes.Replace(kibBounty(i+1, artifacts.URL+"/artifact", receiver.URL+"/answer", exp),
			[]byte(strings.Repeat("ab", 32)), []byte(sha), 1)
	}
	toAccept := make([]time.Duration, n)
	var refused atomic.Int64
	b.ResetTimer()

	atomic.StoreInt64(&target, int64(n))
	answered.Store(0)
	allAnswered = make(chan struct{})
	start := time.Now()
	send(n, func(i int) {
		body := bodies[i]
		h := http.Header{}
		h.Set(webhook.HeaderEvent, "bounty")
		h.Set(webhook.HeaderSignature, webhook.Sign(secret, body))
		h.Set(webhook.HeaderDelivery, strconv.Itoa(i))
		t0 := time.Now()
		for post(intake.URL, body, h) == http.StatusServiceUnavailable {
			refused.Add(1)
			time.Sleep(10 * time.Millisecond) // the queue is full: retry soon
		}
		toAccept[i] = time.Since(t0)
	})
	select {
	case <-allAnswered:
	case <-time.After(5 * time.Minute):
		b.Fatalf("%d of %d answers delivered", answered.Load(), n)
	}
	elapsed := time.Since(start)

	atomic.StoreInt64(&target, int64(n))
	answered.Store(0)
	allAnswered = make(chan struct{})
	floorElapsed := floor(n, bodies)
	b.StopTimer()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := engine.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	slices.Sort(toAccept)
	b.ReportMetric(float64(n)/elapsed.Seconds(), "bounties/s")
	b.ReportMetric(float64(n)/floorElapsed.Seconds(), "floor/s")
	b.ReportMetric(floorElapsed.Seconds()/elapsed.Seconds(), "x-floor")
	b.ReportMetric(float64(toAccept[(len(toAccept)*99)/100].Microseconds())/1000, "p99-to-202-ms")
	b.ReportMetric(float64(refused.Load()), "503s")
}

// BenchmarkDurableIntake: 64 concurrent senders POST signed 1 KiB bounties
// to the handler on a loopback server, which queues them on an in-memory
// broker ("memory") or on the durable localq store, committed to disk
// before the 202 ("localq"); a no-op consumer drains each. The two take
// turns, 2,500 bounties at a time, so that both see the same machine load.
// The time to 202 of a bounty counts every 503 and the retry after it
// (10ms later). Reported per side: bounties accepted per second
// ("memory-intake/s", "localq-intake/s"), CPU time per bounty
// ("memory-cpu-ns", "localq-cpu-ns"), p99 time to 202 ("...-p99-ms") and
// 503s; and localq's throughput as a fraction of memory's, in wall time
// ("x-wall") and in CPU time ("x-cpu"). Target: x-wall at least 0.5.
func BenchmarkDurableIntake(b *testing.B) {
	type side struct {
		name      string
		url       string
		latencies []time.Duration
		wall, cpu time.Duration
		refused   atomic.Int64
		done      int
	}
	open := func(name string) (broker.Broker, func()) {
		if name == "memory" {
			q := broker.NewMemory(broker.MemoryConfig{Capacity: 1 << 20})
			return q, q.Close
		}
		q, err := localq.Open(filepath.Join(b.TempDir(), localq.DefaultFile), localq.Config{Capacity: 1 << 20})
		if err != nil {
			b.Fatal(err)
		}
		return q, func() {
			q.Close()
			if err := q.Release(); err != nil {
				b.Error(err)
			}
		}
	}
	sides := []*side{{name: "memory"}, {name: "localq"}}
	for _, sd := range sides {
		q, closeQueue := open(sd.name)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { _ = q.Consume(ctx, func(context.Context, broker.Job) error { return nil }) })
		defer func() { closeQueue(); cancel(); wg.Wait() }()
		submit := webhook.SubmitFunc(func(ctx context.Context, job broker.Job) error {
			job.Key = broker.BountyKey(job.Bounty) // as Engine.SubmitJob does
			return q.Submit(ctx, job)
		})
		srv := httptest.NewServer(newHandler(b, submit))
		defer srv.Close()
		sd.url = srv.URL
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senderCount}}
	defer client.CloseIdleConnections()
	exp := time.Now().Add(time.Hour)
	bodies := make([][]byte, b.N)
	sigs := make([]string, b.N)
	for i := range bodies {
		bodies[i] = kibBounty(i+1, "https://artifacts.example/a", "https://api.example/answer", exp)
		sigs[i] = webhook.Sign(secret, bodies[i])
	}
	for _, sd := range sides {
		sd.latencies = make([]time.Duration, 0, b.N)
	}

	// send posts bodies[from:to] to sd with senderCount senders.
	send := func(sd *side, from, to int) {
		next := atomic.Int64{}
		next.Store(int64(from))
		lat := make([]time.Duration, to-from)
		var wg sync.WaitGroup
		for range senderCount {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= to {
						return
					}
					t0 := time.Now()
					for {
						req, _ := http.NewRequest(http.MethodPost, sd.url, bytes.NewReader(bodies[i]))
						req.Header.Set(webhook.HeaderEvent, "bounty")
						req.Header.Set(webhook.HeaderSignature, sigs[i])
						req.Header.Set(webhook.HeaderDelivery, strconv.Itoa(i))
						res, err := client.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						_, _ = io.Copy(io.Discard, res.Body)
						_ = res.Body.Close()
						if res.StatusCode == http.StatusServiceUnavailable {
							sd.refused.Add(1)
							time.Sleep(10 * time.Millisecond)
							continue
						}
						if res.StatusCode != http.StatusAccepted {
							b.Errorf("status %d", res.StatusCode)
						}
						break
					}
					lat[i-from] = time.Since(t0)
				}
			})
		}
		wg.Wait()
		sd.latencies = append(sd.latencies, lat...)
	}

	b.ResetTimer()
	const round = 2500
	for from := 0; from < b.N; from += round {
		to := min(from+round, b.N)
		for _, sd := range sides {
			c0, t0 := processCPU(), time.Now()
			send(sd, from, to)
			sd.wall += time.Since(t0)
			sd.cpu += processCPU() - c0
			sd.done += to - from
		}
	}
	b.StopTimer()
	for _, sd := range sides {
		slices.Sort(sd.latencies)
		b.ReportMetric(float64(sd.done)/sd.wall.Seconds(), sd.name+"-intake/s")
		b.ReportMetric(float64(sd.cpu.Nanoseconds())/float64(sd.done), sd.name+"-cpu-ns")
		b.ReportMetric(float64(sd.latencies[(len(sd.latencies)*99)/100].Microseconds())/1000, sd.name+"-p99-ms")
		b.ReportMetric(float64(sd.refused.Load()), sd.name+"-503s")
	}
	mem, dur := sides[0], sides[1]
	b.ReportMetric(float64(mem.wall)/float64(dur.wall), "x-wall")
	if dur.cpu > 0 {
		b.ReportMetric(float64(mem.cpu)/float64(dur.cpu), "x-cpu")
	}
}

// senderCount is how many senders BenchmarkDurableIntake runs at once.
const senderCount = 64
