package natsq_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/polyswarm/psengine"
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
	for _, workers := range []int{1, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			nc := connect(b, startServer(b, ""))
			broker := newBroker(b, nc, natsqBenchConfig())
			var got atomic.Int64
			all := make(chan struct{})
			var mu sync.Mutex
			submitted := make(map[string]time.Time, b.N)
			latencies := make([]time.Duration, 0, b.N)
			e := psengine.New(noopScanner, append(broker.WorkerOptions(),
				psengine.WithBroker(broker), psengine.WithWorkers(workers),
				psengine.OnSuccess(func(_ context.Context, bt psengine.Bounty, _ psengine.Analysis) {
					mu.Lock()
					latencies = append(latencies, time.Since(submitted[bt.ID.String()]))
					mu.Unlock()
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
				mu.Lock()
				submitted[bt.ID.String()] = time.Now()
				mu.Unlock()
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
			slices.Sort(latencies)
			b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
