package bid_test

import (
	"math"
	"testing"

	"github.com/polyswarm/psengine/bid"
)

var sink int64

var benchConfidences = func() []float64 {
	cs := make([]float64, 1024)
	for i := range cs {
		cs[i] = float64(i) / 1023
	}
	return cs
}()

// naiveLinear is the float64 formula that Linear replaces: fast but not exact
// (it loses the low bits of amounts above 2^53). It is the baseline.
func naiveLinear(r bid.Rules, c float64) int64 {
	switch {
	case math.IsNaN(c) || c <= 0:
		return r.Min
	case c >= 1:
		return r.Max
	}
	return r.Clamp(r.Min + int64(c*float64(r.Max-r.Min)))
}

func BenchmarkLinear(b *testing.B) {
	b.Run("exact", func(b *testing.B) {
		i := 0
		for b.Loop() {
			sink += bid.Linear(bid.DefaultRules, benchConfidences[i&1023])
			i++
		}
	})
	b.Run("float64-baseline", func(b *testing.B) {
		i := 0
		for b.Loop() {
			sink += naiveLinear(bid.DefaultRules, benchConfidences[i&1023])
			i++
		}
	})
}

func BenchmarkFromScore(b *testing.B) {
	i := 0
	for b.Loop() {
		sink += bid.FromScore(bid.DefaultRules, 100*benchConfidences[i&1023])
		i++
	}
}
