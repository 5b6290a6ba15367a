package bid

import (
	"math"
	"math/big"
	"strconv"
)

// Linear returns Min + confidence × (Max − Min), truncated toward Min: the
// default bid strategy. The confidence counts as its shortest decimal form,
// the digits its author wrote (strconv.FormatFloat(confidence, 'g', -1, 64)),
// and the product is computed exactly in integers: 0.95 within DefaultRules
// bids exactly 953125000000000000, although the float64 nearest 0.95 is a hair
// below it. confidence is clamped to [0, 1]: NaN and values below 0 give Min,
// values above 1 give Max. A larger float64 never bids less.
//
// r should be valid (see [Rules.Validate]); with Max < Min, Linear returns Min.
func Linear(r Rules, confidence float64) int64 { return share(r, confidence, 1) }

// FromScore maps a score from 0 to 100 linearly onto [Min, Max]:
// Min + score × (Max − Min) / 100, truncated toward Min, exactly. Like
// [Linear] it uses the score's shortest decimal form: 70 gives exactly 70% of
// the span and 33.3 exactly 33.3%. NaN and scores below 0 give Min, scores
// above 100 give Max. A larger float64 never bids less. With Max < Min it
// returns Min.
func FromScore(r Rules, score float64) int64 { return share(r, score, 100) }

// share returns Min + floor(d × (Max − Min) / scale), where d is the shortest
// decimal form of x, for 0 < x < scale and Max > Min, computed exactly with
// math/big. Otherwise it returns Min (NaN, x <= 0 or Max <= Min) or Max
// (x >= scale).
//
// d reads back as x, and rounding to the nearest float64 never decreases, so
// a larger x has a larger d (bids are monotonic) and d < scale (the result
// stays within Max).
func share(r Rules, x float64, scale int64) int64 {
	switch {
	case r.Max <= r.Min || math.IsNaN(x) || x <= 0:
		return r.Min
	case x >= float64(scale):
		return r.Max
	}
	d, _ := new(big.Rat).SetString(strconv.FormatFloat(x, 'g', -1, 64)) // a finite float's text always parses
	n := new(big.Int).Mul(d.Num(), new(big.Int).SetUint64(span(r)))
	n.Quo(n, new(big.Int).Mul(d.Denom(), big.NewInt(scale))) // n > 0: truncation is floor
	return offset(r.Min, n.Uint64())
}

// span returns Max − Min as an unsigned 64-bit number (exact when Max >= Min).
func span(r Rules) uint64 { return uint64(r.Max) - uint64(r.Min) }

// offset returns min + d in two's complement; d never exceeds the span, so the
// true sum is at most Max.
func offset(min int64, d uint64) int64 { return int64(uint64(min) + d) }
