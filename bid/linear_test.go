package bid_test

import (
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/polyswarm/psengine/bid"
)

// refScaled computes Min + floor(x × (Max − Min) / div) with math/big, for
// 0 < x/div < 1 and Min <= Max, where x counts as its shortest decimal form:
// the reference for Linear (div 1) and FromScore (div 100). It takes another
// road than Linear: the 'f' form's digits as an integer over a power of ten.
func refScaled(r bid.Rules, x float64, div int64) int64 {
	intPart, frac, _ := strings.Cut(strconv.FormatFloat(x, 'f', -1, 64), ".")
	num, ok := new(big.Int).SetString(intPart+frac, 10) // x == num / 10^len(frac)
	if !ok {
		panic("unparsable float text")
	}
	den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(frac))), nil)
	den.Mul(den, big.NewInt(div))
	span := new(big.Int).Sub(big.NewInt(r.Max), big.NewInt(r.Min))
	q := new(big.Int).Quo(num.Mul(num, span), den) // positive: truncation is floor
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

// The expectations are worked out by hand from the decimal the confidence is
// written as (and checked against the reference too).
func TestLinearExact(t *testing.T) {
	below1 := math.Nextafter(1, 0) // 0.9999999999999999
	tests := []struct {
		r    bid.Rules
		c    float64
		want int64
	}{
		// DefaultRules: Min 0.0625 NCT, span 0.9375 NCT = 937_500_000_000_000_000.
		{bid.DefaultRules, 0, 62_500_000_000_000_000},
		{bid.DefaultRules, 0.5, 531_250_000_000_000_000},
		{bid.DefaultRules, 1, 1_000_000_000_000_000_000},
		{bid.DefaultRules, 0.25, 296_875_000_000_000_000},
		{bid.DefaultRules, 0.95, 953_125_000_000_000_000}, // 62.5e15 + 890.625e15; the float64 is a hair below 0.95
		{bid.DefaultRules, 0.1, 156_250_000_000_000_000},  // 62.5e15 + 93.75e15
		{bid.DefaultRules, 0.3, 343_750_000_000_000_000},  // 62.5e15 + 281.25e15
		{bid.DefaultRules, 0.7, 718_750_000_000_000_000},  // 62.5e15 + 656.25e15
		{bid.DefaultRules, 0.9, 906_250_000_000_000_000},  // 62.5e15 + 843.75e15; the float64 is a hair above 0.9
		{bid.DefaultRules, 0.9999, 999_906_250_000_000_000},
		{bid.DefaultRules, 1e-7, 62_500_093_750_000_000},                        // + 93_750_000_000
		{bid.DefaultRules, 0.123456789, 178_240_739_687_500_000},                // + 937_500_000 × 123_456_789
		{bid.DefaultRules, 1e-17, 62_500_000_000_000_009},                       // + 9.375, truncated
		{bid.DefaultRules, 1.0 / 3, 374_999_999_999_999_968},                    // 0.3333333333333333: + 312_499_999_999_999_968.75, truncated
		{bid.DefaultRules, below1, 999_999_999_999_999_906},                     // 1e18 − 93.75, truncated
		{bid.DefaultRules, math.SmallestNonzeroFloat64, 62_500_000_000_000_000}, // 5e-324
		// wide: span 2^63 − 2 = 9_223_372_036_854_775_806.
		{wide, 0, 1},
		{wide, 0.5, 4_611_686_018_427_387_904},
		{wide, 1, maxInt},
		{wide, below1, maxInt - 923}, // 1 + floor(span − 922.33...)
		{wide, 0x1p-62, 3},           // 2.168404344971009e-19 × span = 2.0000000000000002...
		{wide, 0x1p-63, 1},           // 1.0842021724855044e-19 × span < 1
		{wide, math.SmallestNonzeroFloat64, 1},
		{narrow, 0, maxInt - 1000},
		{narrow, 0.5, maxInt - 500},
		{narrow, 1, maxInt},
		{narrow, below1, maxInt - 1},
		{upper, 0.5, 6_917_529_027_641_081_855},
		{bid.Rules{Min: 100, Max: 200}, 0.333, 133},
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
		{bid.DefaultRules, 70, 718_750_000_000_000_000}, // exactly 70%, as Linear(0.7)
		{bid.DefaultRules, 5, 109_375_000_000_000_000},
		{bid.DefaultRules, 95, 953_125_000_000_000_000},
		{bid.DefaultRules, 33, 371_875_000_000_000_000},
		{bid.DefaultRules, 0.5, 67_187_500_000_000_000},   // 62.5e15 + 4.6875e15
		{bid.DefaultRules, 33.3, 374_687_500_000_000_000}, // 62.5e15 + 312.1875e15
		{bid.DefaultRules, 99.99, 999_906_250_000_000_000},
		{bid.DefaultRules, 99.9, 999_062_500_000_000_000},
		{bid.DefaultRules, 0.1, 63_437_500_000_000_000},
		{bid.Rules{Min: 100, Max: 200}, 33.3, 133},
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

// A confidence c and the score 100c written the same way bid the same.
func TestScoreMatchesConfidence(t *testing.T) {
	for _, tt := range []struct{ c, score float64 }{
		{0.95, 95}, {0.1, 10}, {0.333, 33.3}, {0.9999, 99.99}, {0.005, 0.5}, {0.123456789, 12.3456789},
	} {
		for _, r := range []bid.Rules{bid.DefaultRules, wide, narrow, upper} {
			if l, s := bid.Linear(r, tt.c), bid.FromScore(r, tt.score); l != s {
				t.Errorf("rules %+v: Linear(%v) = %d, FromScore(%v) = %d", r, tt.c, l, tt.score, s)
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
	f.Add(bid.DefaultRules.Min, bid.DefaultRules.Max, 0.5, 0.95)
	f.Add(bid.DefaultRules.Min, bid.DefaultRules.Max, 0.95, math.Nextafter(0.95, 0))
	f.Add(int64(1), int64(maxInt), math.Nextafter(1, 0), 1.0)
	f.Add(int64(maxInt-1), int64(maxInt), 0.999, 0.1)
	f.Add(int64(5), int64(5), 0.0, 1.0)
	f.Add(int64(1), int64(2), math.SmallestNonzeroFloat64, 0x1p-1022)
	f.Fuzz(func(t *testing.T, lo, hi int64, c, other float64) {
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
		// Monotonic between any two confidences, not only neighbours.
		if g := bid.Linear(r, other); other > c && g < got || other < c && g > got {
			t.Fatalf("Linear(%+v): %v bids %d, %v bids %d", r, c, got, other, g)
		}
		for _, s := range []float64{c * 100, other} {
			gs := bid.FromScore(r, s)
			if want := refFromScore(r, s); gs != want || !r.Contains(gs) {
				t.Fatalf("FromScore(%+v, %v) = %d; want %d", r, s, gs, want)
			}
			if up := math.Nextafter(s, math.Inf(1)); bid.FromScore(r, up) < gs {
				t.Fatalf("FromScore(%+v) decreases between %v and %v", r, s, up)
			}
		}
	})
}
