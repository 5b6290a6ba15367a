package bid

import (
	"math"
	"math/bits"
)

// Linear returns Min + confidence × (Max − Min), truncated toward Min: the
// default bid strategy. confidence is clamped to [0, 1]: NaN and values below 0
// give Min, values above 1 give Max. The result is exact for every int64 rule
// (the confidence is used at its full float64 precision and the product is
// computed in 128 bits) and never decreases as confidence grows.
//
// r should be valid (see [Rules.Validate]); with Max < Min, Linear returns Min.
func Linear(r Rules, confidence float64) int64 {
	switch {
	case r.Max <= r.Min || math.IsNaN(confidence) || confidence <= 0:
		return r.Min
	case confidence >= 1:
		return r.Max
	}
	m, shift := decompose(confidence)
	hi, lo := bits.Mul64(m, span(r))
	return offset(r.Min, shiftRight128(hi, lo, shift))
}

// FromScore maps a score from 0 to 100 linearly onto [Min, Max]:
// Min + score × (Max − Min) / 100, truncated toward Min, exactly (a score of 70
// gives exactly 70% of the span, with no float64 rounding of 0.7). NaN and
// scores below 0 give Min, scores above 100 give Max. It never decreases as
// the score grows. With Max < Min it returns Min.
func FromScore(r Rules, score float64) int64 {
	switch {
	case r.Max <= r.Min || math.IsNaN(score) || score <= 0:
		return r.Min
	case score >= 100:
		return r.Max
	}
	m, shift := decompose(score) // score < 100 < 2^53, so shift >= 1
	hi, lo := bits.Mul64(m, span(r))
	// floor(floor(P / 100) / 2^shift) == floor(P / (100 * 2^shift)).
	qhi, rem := bits.Div64(0, hi, 100)
	qlo, _ := bits.Div64(rem, lo, 100)
	return offset(r.Min, shiftRight128(qhi, qlo, shift))
}

// span returns Max − Min as an unsigned 64-bit number (exact when Max >= Min).
func span(r Rules) uint64 { return uint64(r.Max) - uint64(r.Min) }

// offset returns min + d in two's complement; d never exceeds the span, so the
// true sum is at most Max.
func offset(min int64, d uint64) int64 { return int64(uint64(min) + d) }

// decompose returns m and shift with x == m / 2^shift exactly, for finite
// 0 < x < 2^53.
func decompose(x float64) (m uint64, shift uint) {
	b := math.Float64bits(x)
	exp := int(b>>52) & 0x7ff
	m = b & (1<<52 - 1)
	if exp == 0 { // subnormal
		return m, 1074
	}
	return m | 1<<52, uint(1075 - exp)
}

// shiftRight128 returns the low 64 bits of (hi:lo) >> n.
func shiftRight128(hi, lo uint64, n uint) uint64 {
	switch {
	case n >= 128:
		return 0
	case n >= 64:
		return hi >> (n - 64)
	case n == 0:
		return lo
	}
	return lo>>n | hi<<(64-n)
}
