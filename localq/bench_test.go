package localq_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine/localq"
	"github.com/polyswarm/psengine/psenginetest"
)

// BenchmarkSubmit: 64 goroutines submit jobs at once (each Submit waits
// for its commit), against broker.Memory; a consumer acknowledges them.
// Reports jobs/s beside ns/op and cpu-ns/op.
func BenchmarkSubmit(b *testing.B) {
	for _, name := range []string{"memory", "localq"} {
		b.Run(name, func(b *testing.B) {
			var q broker.Broker
			var release func()
			if name == "memory" {
				m := broker.NewMemory(broker.MemoryConfig{Capacity: 1 << 20})
				q, release = m, m.Close
			} else {
				l, err := localq.Open(filepath.Join(b.TempDir(), localq.DefaultFile), localq.Config{Capacity: 1 << 20})
				if err != nil {
					b.Fatal(err)
				}
				q, release = l, func() { l.Close(); _ = l.Release() }
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = q.Consume(ctx, func(context.Context, broker.Job) error { return nil })
			}()
			defer func() { cancel(); <-done; release() }()
			bounty := psenginetest.Bounty([]byte("x"), psenginetest.WithExpiration(time.Now().Add(time.Hour)))
			var n atomic.Int64
			b.SetParallelism(32) // 64 goroutines on 2 CPUs
			stop := psenginetest.MeasureCPU(b)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := fmt.Sprint(n.Add(1))
					if err := q.Submit(context.Background(), broker.Job{ID: id, Key: id, Bounty: bounty}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
			stop()
		})
	}
}
