package natsq_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/natsq"
	"github.com/polyswarm/psengine/natsq/embedded"
	"github.com/polyswarm/psengine/psenginetest"
)

// dataBounty is a bounty whose artifact travels inside it (a data: URI).
func dataBounty(i int) psengine.Bounty {
	content := fmt.Appendf(nil, "benign payload number %d", i)
	sum := sha256.Sum256(content)
	uri := "data:text/plain;base64," + base64.StdEncoding.EncodeToString(content)
	return psengine.LocalBounty(psengine.FileArtifact, uri, hex.EncodeToString(sum[:]), "text/plain", time.Now(), time.Hour)
}

var noopScanner = psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
	return psengine.Analysis{Verdict: psengine.Unknown}, nil
})

// BenchmarkRawJetStream is the baseline: the same payloads published
// (waiting for each publish acknowledgement, as Submit does) on a
// work-queue stream and consumed with the client's own pipelined Consume,
// acknowledging each.
func BenchmarkRawJetStream(b *testing.B) {
	nc := connect(b, startServer(b, ""))
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "raw", Subjects: []string{"raw.jobs"},
		Retention: jetstream.WorkQueuePolicy, Duplicates: 10 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		b.Fatal(err)
	}
	payloads := make([][]byte, b.N)
	for i := range payloads {
		payloads[i], _ = dataBounty(i).MarshalJSON()
	}
	var got atomic.Int64
	all := make(chan struct{})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if got.Add(1) == int64(b.N) {
			close(all)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	b.ResetTimer()
	for i, p := range payloads {
		msg := &nats.Msg{Subject: "raw.jobs", Data: p, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprint(i))
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
	<-all
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// BenchmarkEngine is the same traffic through the library: Engine.Submit
// onto a natsq broker, Engine.Serve with a no-op scanner (fetch, identify,
// scan, bid, enrich, validate), acknowledged after the hooks ran.
func BenchmarkEngine(b *testing.B) {
	for _, workers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			nc := connect(b, startServer(b, ""))
			q := newBroker(b, nc, natsqBenchConfig())
			var got atomic.Int64
			all := make(chan struct{})
			e := psengine.New(noopScanner, append(q.WorkerOptions(),
				psengine.WithBroker(q), psengine.WithWorkers(workers),
				psengine.OnSuccess(func(context.Context, psengine.Result) {
					if got.Add(1) == int64(b.N) {
						close(all)
					}
				}))...)
			bounties := make([]psengine.Bounty, b.N)
			for i := range bounties {
				bounties[i] = dataBounty(i)
			}
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- e.Serve(ctx) }()
			b.ResetTimer()
			for _, bt := range bounties {
				if err := e.Submit(context.Background(), bt); err != nil {
					b.Fatal(err)
				}
			}
			<-all
			b.StopTimer()
			cancel()
			<-served
			_ = e.Shutdown(context.Background())
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}

// BenchmarkEngineVsRaw is the throughput figure: submit -> worker -> ack
// through the library (Engine.Submit on a natsq broker: the content key
// recorded, then the job published; Engine.Serve with a no-op scanner and
// WithWorkers(w): a scan mark per scan, acknowledged after the hooks) against
// raw JetStream (the same payloads published, waiting for each publish
// acknowledgement as Submit does, and consumed with the client's pipelined
// Consume), on the same server. The two alternate in rounds of 100 jobs so
// that the machine's load, which others share, weighs on both alike;
// "ratio" is library jobs/s over raw jobs/s, "cpu-ratio" raw CPU time per
// job over the library's (the process's: the server, which runs in it,
// included).
func BenchmarkEngineVsRaw(b *testing.B) {
	for _, workers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			nc := connect(b, startServer(b, ""))
			ctx := context.Background()

			js, err := jetstream.New(nc)
			if err != nil {
				b.Fatal(err)
			}
			st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "raw", Subjects: []string{"raw.jobs"},
				Retention: jetstream.WorkQueuePolicy, Duplicates: 10 * time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy})
			if err != nil {
				b.Fatal(err)
			}
			rawDone := make(chan struct{}, 1)
			var rawGot, rawWant atomic.Int64
			cc, err := cons.Consume(func(m jetstream.Msg) {
				_ = m.Ack()
				if rawGot.Add(1) == rawWant.Load() {
					rawDone <- struct{}{}
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Stop()

			q := newBroker(b, nc, natsqBenchConfig())
			libDone := make(chan struct{}, 1)
			var libGot, libWant atomic.Int64
			e := psengine.New(noopScanner, append(q.WorkerOptions(), psengine.WithBroker(q), psengine.WithWorkers(workers),
				psengine.OnSuccess(func(context.Context, psengine.Result) {
					if libGot.Add(1) == libWant.Load() {
						libDone <- struct{}{}
					}
				}))...)
			sctx, cancel := context.WithCancel(ctx)
			served := make(chan error, 1)
			go func() { served <- e.Serve(sctx) }()
			defer func() { cancel(); <-served; _ = e.Shutdown(context.Background()) }()

			bounties := make([]psengine.Bounty, b.N)
			payloads := make([][]byte, b.N)
			for i := range bounties {
				bounties[i] = dataBounty(i)
				payloads[i], _ = bounties[i].MarshalJSON()
			}
			const round = 100
			var rawTime, libTime, rawCPU, libCPU time.Duration
			b.ResetTimer()
			for lo := 0; lo < b.N; lo += round {
				hi := min(lo+round, b.N)
				rawWant.Store(int64(hi))
				c0 := processCPU(b)
				t0 := time.Now()
				for i := lo; i < hi; i++ {
					msg := &nats.Msg{Subject: "raw.jobs", Data: payloads[i], Header: nats.Header{}}
					msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprint(i))
					if _, err := js.PublishMsg(ctx, msg); err != nil {
						b.Fatal(err)
					}
				}
				<-rawDone
				rawTime += time.Since(t0)
				rawCPU += processCPU(b) - c0

				libWant.Store(int64(hi))
				c0 = processCPU(b)
				t0 = time.Now()
				for i := lo; i < hi; i++ {
					if err := e.Submit(ctx, bounties[i]); err != nil {
						b.Fatal(err)
					}
				}
				<-libDone
				libTime += time.Since(t0)
				libCPU += processCPU(b) - c0
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/rawTime.Seconds(), "raw-jobs/s")
			b.ReportMetric(float64(b.N)/libTime.Seconds(), "lib-jobs/s")
			b.ReportMetric(rawTime.Seconds()/libTime.Seconds(), "ratio")
			// The server runs in this process: its CPU time is counted.
			b.ReportMetric(float64(rawCPU.Microseconds())/float64(b.N), "raw-cpu-us/job")
			b.ReportMetric(float64(libCPU.Microseconds())/float64(b.N), "lib-cpu-us/job")
			b.ReportMetric(rawCPU.Seconds()/libCPU.Seconds(), "cpu-ratio")
		})
	}
}

// BenchmarkLatency measures submit -> answer for one bounty at a time (no
// queueing): Engine.Submit until the worker's success hook runs.
func BenchmarkLatency(b *testing.B) {
	nc := connect(b, startServer(b, ""))
	q := newBroker(b, nc, natsqBenchConfig())
	answered := make(chan struct{}, 1)
	e := psengine.New(noopScanner, append(q.WorkerOptions(), psengine.WithBroker(q),
		psengine.OnSuccess(func(context.Context, psengine.Result) { answered <- struct{}{} }))...)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- e.Serve(ctx) }()
	bounties := make([]psengine.Bounty, b.N)
	for i := range bounties {
		bounties[i] = dataBounty(i)
	}
	latencies := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for _, bt := range bounties {
		t0 := time.Now()
		if err := e.Submit(context.Background(), bt); err != nil {
			b.Fatal(err)
		}
		<-answered
		latencies = append(latencies, time.Since(t0))
	}
	b.StopTimer()
	cancel()
	<-served
	_ = e.Shutdown(context.Background())
	slices.Sort(latencies)
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkWorkerProcesses runs the analyze flow (Broker.Analyze: submit,
// answer through the results bucket, in order) against 1, 2 and 4 worker
// processes (the example CLI with a no-op scanner, --workers 2 each) on a
// loopback server.
func BenchmarkWorkerProcesses(b *testing.B) {
	for _, procs := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("procs=%d", procs), func(b *testing.B) {
			srv, err := embedded.Start(embedded.Options{StoreDir: b.TempDir(), Listen: "127.0.0.1:0"})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Shutdown()
			nc := connect(b, srv)
			prefix := fmt.Sprintf("procs%d", procs)
			q := newBroker(b, nc, natsq.Config{Prefix: prefix})
			defer startWorkerProcesses(b, srv.ClientURL(), prefix, procs)()
			js, _ := jetstream.New(nc)
			cons, err := js.Consumer(context.Background(), prefix+"_jobs", prefix+"_workers")
			if err != nil {
				b.Fatal(err)
			}
			waitFor(b, "the workers to pull", func() bool {
				info, err := cons.Info(context.Background())
				return err == nil && info.NumWaiting >= procs*2
			})
			reqs := make([]natsq.Request, b.N)
			for i := range reqs {
				reqs[i] = natsq.Request{Bounty: dataBounty(i)}
			}
			b.ResetTimer()
			for res := range q.Analyze(context.Background(), reqs) {
				if !res.Answered {
					b.Fatalf("%s: %v", res.Bounty.ID, res.Err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "bounties/s")
		})
	}
}

// BenchmarkWorkerDrain measures the workers alone: b.N bounties queued
// first, then 1, 2 or 4 worker processes (the example CLI with a no-op
// scanner, --workers 2 each) drain the queue; the rate is counted from the
// first acknowledgement, so process start-up is left out.
func BenchmarkWorkerDrain(b *testing.B) {
	for _, procs := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("procs=%d", procs), func(b *testing.B) {
			srv, err := embedded.Start(embedded.Options{StoreDir: b.TempDir(), Listen: "127.0.0.1:0"})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Shutdown()
			nc := connect(b, srv)
			prefix := fmt.Sprintf("drain%d", procs)
			q := newBroker(b, nc, natsq.Config{Prefix: prefix})
			for i := range b.N {
				bt := dataBounty(i)
				if err := q.Submit(context.Background(), broker.Job{ID: bt.ID.String(), Bounty: bt}); err != nil {
					b.Fatal(err)
				}
			}
			js, _ := jetstream.New(nc)
			st, err := js.Stream(context.Background(), prefix+"_jobs")
			if err != nil {
				b.Fatal(err)
			}
			queued := func() int {
				info, err := st.Info(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				return int(info.State.Msgs)
			}
			b.ResetTimer()
			defer startWorkerProcesses(b, srv.ClientURL(), prefix, procs)()
			var first int
			var t0 time.Time
			waitForPoll(b, "the first acknowledgement", time.Millisecond, func() bool {
				first = queued()
				t0 = time.Now()
				return first < b.N
			})
			waitForPoll(b, "the queue to drain", time.Millisecond, func() bool { return queued() == 0 })
			b.StopTimer()
			b.ReportMetric(float64(first)/time.Since(t0).Seconds(), "bounties/s")
		})
	}
}

// BenchmarkBroker is the broker alone: Submit, Consume with a handler that
// does nothing, ack; with 1, 4 and 256 consumers in the process (256: an
// engine's default WithInFlight).
func BenchmarkBroker(b *testing.B) {
	for _, consumers := range []int{1, 4, 256} {
		b.Run(fmt.Sprintf("consumers=%d", consumers), func(b *testing.B) {
			nc := connect(b, startServer(b, ""))
			q := newBroker(b, nc, natsqBenchConfig())
			var got atomic.Int64
			all := make(chan struct{})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{}, consumers)
			for range consumers {
				go func() {
					defer func() { done <- struct{}{} }()
					_ = q.Consume(ctx, func(context.Context, broker.Job) error {
						if got.Add(1) == int64(b.N) {
							close(all)
						}
						return nil
					})
				}()
			}
			jobs := make([]broker.Job, b.N)
			for i := range jobs {
				bt := dataBounty(i)
				jobs[i] = broker.Job{ID: bt.ID.String(), Bounty: bt}
			}
			b.ResetTimer()
			stopCPU := psenginetest.MeasureCPU(b)
			for _, j := range jobs {
				if err := q.Submit(context.Background(), j); err != nil {
					b.Fatal(err)
				}
			}
			<-all
			b.StopTimer()
			stopCPU()
			cancel()
			for range consumers {
				<-done
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}

// startWorkerProcesses starts procs worker processes (this test binary
// re-run as the worker command, two workers each) serving the broker with
// prefix at url, and returns the function that stops them (SIGTERM, wait).
func startWorkerProcesses(b *testing.B, url, prefix string, procs int) (stop func()) {
	b.Helper()
	args := fmt.Sprintf("worker --backend nats --nats-url %s --nats-prefix %s --workers 2", url, prefix)
	var workers []*exec.Cmd
	stop = func() {
		for _, w := range workers {
			_ = w.Process.Signal(syscall.SIGTERM)
			_ = w.Wait()
		}
	}
	for range procs {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), workerEnv+"="+args, "PSENGINE_HOME="+b.TempDir(), "LOG_LEVEL=warn")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			stop()
			b.Fatal(err)
		}
		workers = append(workers, cmd)
	}
	return stop
}

// processCPU is the CPU time (user and system) the process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
