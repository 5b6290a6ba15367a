package pipeline_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"

	"github.com/polyswarm/psengine/pipeline"
)

// BenchmarkOverhead compares running a stage over 1000 items with a plain loop
// (the baseline) against Stream, for a trivial stage (pure
// overhead) and for one hashing 4 KiB (a small but real piece of work). Compare
// the ns/item metric of each sub-benchmark with its loop baseline.
func BenchmarkOverhead(b *testing.B) {
	const items = 1000
	block := make([]byte, 4<<10)
	stages := []struct {
		name string
		s    pipeline.Stage[int, int]
	}{
		{"trivial", func(_ context.Context, n int) (int, error) { return n + 1, nil }},
		{"sha256-4KiB", func(_ context.Context, n int) (int, error) {
			sum := sha256.Sum256(block)
			return n + int(sum[0]), nil
		}},
	}
	ins := make([]int, items)
	for i := range ins {
		ins[i] = i
	}
	ctx := context.Background()
	for _, st := range stages {
		b.Run(st.name+"/loop", func(b *testing.B) {
			outs := make([]int, items)
			for b.Loop() {
				for i, in := range ins {
					out, err := st.s(ctx, in)
					if err != nil {
						b.Fatal(err)
					}
					outs[i] = out
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*items), "ns/item")
		})
		for _, limit := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/Stream-%d", st.name, limit), func(b *testing.B) {
				for b.Loop() {
					for _, err := range pipeline.Stream(ctx, limit, slices.Values(ins), st.s) {
						if err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*items), "ns/item")
			})
		}
	}
}
