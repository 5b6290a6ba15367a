package bid_test

import (
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/polyswarm/psengine/bid"
)

// refScaled computes Min + floor(x × (Max − Min) / div) with math/big, for
// 0 < x/div < 1 and Min <= Max: the reference for Linear (div 1) and
// FromScore (div 100).
func refScaled(r bid.Rules, x float64, div int64) int64 {
	span := new(big.Int).Sub(big.NewInt(r.Max), big.NewInt(r.Min))
	p := new(big.Rat).Mul(new(big.Rat).SetFloat64(x), new(big.Rat).SetInt(span))
	p.Quo(p, new(big.Rat).SetInt64(div))
	q := new(big.Int).Quo(p.Num(), p.Denom()) // positive: truncation is floor
	return q.Add(q, big.NewInt(r.Min)).Int64()
}

func refLinear(r bid.Rules, c float64) int64 {
	switch {
	case r.Max <= r.Min || math.IsNaN(c) || c <= 0:
		return r.Min
	case c >= 1:
		return r.Max
	}
	return refScaled(r, c, 1)
}

func refFromScore(r bid.Rules, s float64) int64 {
	switch {
	case r.Max <= r.Min || math.IsNaN(s) || s <= 0:
		return r.Min
	case s >= 100:
		return r.Max
	}
	return refScaled(r, s, 100)
}

const maxInt = math.MaxInt64

var (
	wide   = bid.Rules{Min: 1, Max: maxInt}
	narrow = bid.Rules{Min: maxInt - 1000, Max: maxInt}
	upper  = bid.Rules{Min: maxInt / 2, Max: maxInt}
)

func TestLinearExact(t *testing.T) {
	below1 := math.Nextafter(1, 0)
	tests := []struct {
		r    bid.Rules
		c    float64
		want int64
	}{
		{bid.DefaultRules, 0, 62_500_000_000_000_000},
		{bid.DefaultRules, 0.5, 531_250_000_000_000_000},
		{bid.DefaultRules, 1, 1_000_000_000_000_000_000},
		{bid.DefaultRules, 0.25, 296_875_000_000_000_000},
		{bid.DefaultRules, 0.7, 718_749_999_999_999_958}, // 0.7 as a float64 is a hair below 0.7
		{wide, 0, 1},
		{wide, 0.5, 4_611_686_018_427_387_904},
		{wide, 1, maxInt},
		{wide, below1, maxInt - 1024}, // 1 + (2^63-2)(1-2^-53), truncated: float64 maths cannot tell this from Max
		{wide, 0x1p-62, 2},            // 1 + floor(2 - 2^-61)
		{wide, 0x1p-63, 1},            // (2^63-2)/2^63 < 1
		{wide, math.SmallestNonzeroFloat64, 1},
		{narrow, 0, maxInt - 1000},
		{narrow, 0.5, maxInt - 500},
		{narrow, 1, maxInt},
		{narrow, below1, maxInt - 1},
		{upper, 0.5, 6_917_529_027_641_081_855},
		{bid.Rules{Min: 7, Max: 7}, 0.5, 7},
		{bid.Rules{Min: 9, Max: 3}, 0.5, 9},                   // invalid: Min
		{bid.Rules{Min: math.MinInt64, Max: maxInt}, 0.5, -1}, // invalid for bids, still exact maths
		{bid.DefaultRules, math.NaN(), 62_500_000_000_000_000},
		{bid.DefaultRules, -0.1, 62_500_000_000_000_000},
		{bid.DefaultRules, math.Inf(-1), 62_500_000_000_000_000},
		{bid.DefaultRules, math.Copysign(0, -1), 62_500_000_000_000_000},
		{bid.DefaultRules, 1.5, 1_000_000_000_000_000_000},
		{bid.DefaultRules, math.Inf(1), 1_000_000_000_000_000_000},
	}
	for _, tt := range tests {
		if got := bid.Linear(tt.r, tt.c); got != tt.want {
			t.Errorf("Linear(%+v, %v) = %d; want %d", tt.r, tt.c, got, tt.want)
		}
		if tt.r.Min <= tt.r.Max {
			if ref := refLinear(tt.r, tt.c); ref != tt.want {
				t.Errorf("reference(%+v, %v) = %d; the table says %d", tt.r, tt.c, ref, tt.want)
			}
		}
	}
}

func TestFromScoreExact(t *testing.T) {
	tests := []struct {
		r     bid.Rules
		score float64
		want  int64
	}{
		{bid.DefaultRules, 0, 62_500_000_000_000_000},
		{bid.DefaultRules, 50, 531_250_000_000_000_000},
		{bid.DefaultRules, 100, 1_000_000_000_000_000_000},
		{bid.DefaultRules, 70, 718_750_000_000_000_000}, // exactly 70%, unlike Linear(0.7)
		{bid.DefaultRules, 5, 109_375_000_000_000_000},
		{bid.DefaultRules, 95, 953_125_000_000_000_000},
		{bid.DefaultRules, 33, 371_875_000_000_000_000},
		{wide, 50, 4_611_686_018_427_387_904},
		{wide, 1, 1 + (maxInt-1)/100},
		{wide, 99, 1 + (maxInt-1)/100*99 + (maxInt-1)%100*99/100},
		{narrow, 50, maxInt - 500},
		{narrow, 99.9, maxInt - 1},
		{narrow, 0.1, maxInt - 999},
		{bid.DefaultRules, math.NaN(), 62_500_000_000_000_000},
		{bid.DefaultRules, -3, 62_500_000_000_000_000},
		{bid.DefaultRules, 150, 1_000_000_000_000_000_000},
		{bid.Rules{Min: 9, Max: 3}, 50, 9},
	}
	for _, tt := range tests {
		if got := bid.FromScore(tt.r, tt.score); got != tt.want {
			t.Errorf("FromScore(%+v, %v) = %d; want %d", tt.r, tt.score, got, tt.want)
		}
		if tt.r.Min <= tt.r.Max {
			if ref := refFromScore(tt.r, tt.score); ref != tt.want {
				t.Errorf("reference(%+v, %v) = %d; the table says %d", tt.r, tt.score, ref, tt.want)
			}
		}
	}
}

// randomRules returns valid rules biased toward the edges of int64.
func randomRules(rng *rand.Rand) bid.Rules {
	pick := func() int64 {
		switch rng.IntN(4) {
		case 0:
			return maxInt - rng.Int64N(1<<20)
		case 1:
			return 1 + rng.Int64N(1<<20)
		case 2:
			return 1 + rng.Int64N(2*bid.NCT)
		}
		return 1 + rng.Int64N(maxInt)
	}
	a, b := pick(), pick()
	return bid.Rules{Min: min(a, b), Max: max(a, b)}
}

// randomUnit returns values in and around [0, 1], biased toward the edges.
func randomUnit(rng *rand.Rand) float64 {
	switch rng.IntN(6) {
	case 0:
		return math.Ldexp(rng.Float64(), -rng.IntN(1100)) // tiny, subnormals included
	case 1:
		return 1 - math.Ldexp(rng.Float64(), -rng.IntN(60)) // just below 1
	case 2:
		return rng.Float64()*1.4 - 0.2 // a little outside
	case 3:
		return float64(rng.IntN(101)) / 100
	}
	return rng.Float64()
}

func TestLinearMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50_000 {
		r, c := randomRules(rng), randomUnit(rng)
		got := bid.Linear(r, c)
		if want := refLinear(r, c); got != want {
			t.Fatalf("Linear(%+v, %v) = %d; want %d", r, c, got, want)
		}
		if !r.Contains(got) {
			t.Fatalf("Linear(%+v, %v) = %d is outside the rules", r, c, got)
		}
		s := c * 100
		if got, want := bid.FromScore(r, s), refFromScore(r, s); got != want {
			t.Fatalf("FromScore(%+v, %v) = %d; want %d", r, s, got, want)
		}
	}
}

func TestMonotonic(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, r := range []bid.Rules{bid.DefaultRules, wide, narrow, upper, randomRules(rng), randomRules(rng)} {
		xs := make([]float64, 2000)
		for i := range xs {
			xs[i] = randomUnit(rng)
		}
		xs = append(xs, 0, 0.5, 1, math.Nextafter(1, 0), math.Nextafter(0.5, 0), math.Nextafter(0.5, 1))
		slices.Sort(xs)
		prevL, prevS := int64(math.MinInt64), int64(math.MinInt64)
		for _, x := range xs {
			l, s := bid.Linear(r, x), bid.FromScore(r, 100*x)
			if l < prevL || s < prevS {
				t.Fatalf("rules %+v: not monotonic at %v: Linear %d after %d, FromScore %d after %d", r, x, l, prevL, s, prevS)
			}
			prevL, prevS = l, s
			// The next float up never bids less either.
			if up := math.Nextafter(x, 2); bid.Linear(r, up) < l {
				t.Fatalf("rules %+v: Linear(%v) < Linear(%v)", r, up, x)
			}
		}
	}
}

func FuzzLinear(f *testing.F) {
	f.Add(bid.DefaultRules.Min, bid.DefaultRules.Max, 0.5)
	f.Add(int64(1), int64(maxInt), math.Nextafter(1, 0))
	f.Add(int64(maxInt-1), int64(maxInt), 0.999)
	f.Add(int64(5), int64(5), 0.0)
	f.Add(int64(1), int64(2), math.SmallestNonzeroFloat64)
	f.Fuzz(func(t *testing.T, lo, hi int64, c float64) {
		if lo <= 0 || hi < lo {
			return // only valid rules carry the guarantees
		}
		r := bid.Rules{Min: lo, Max: hi}
		got := bid.Linear(r, c)
		if !r.Contains(got) {
			t.Fatalf("Linear(%+v, %v) = %d is outside the rules", r, c, got)
		}
		if want := refLinear(r, c); got != want {
			t.Fatalf("Linear(%+v, %v) = %d; want %d", r, c, got, want)
		}
		if up := math.Nextafter(c, math.Inf(1)); bid.Linear(r, up) < got {
			t.Fatalf("Linear(%+v) decreases between %v and %v", r, c, up)
		}
		s := c * 100
		gs := bid.FromScore(r, s)
		if want := refFromScore(r, s); gs != want || !r.Contains(gs) {
			t.Fatalf("FromScore(%+v, %v) = %d; want %d", r, s, gs, want)
		}
		if up := math.Nextafter(s, math.Inf(1)); bid.FromScore(r, up) < gs {
			t.Fatalf("FromScore(%+v) decreases between %v and %v", r, s, up)
		}
	})
}
