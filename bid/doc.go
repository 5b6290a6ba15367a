// Package bid turns a scanner's confidence, a 0-100 score or an ICD 203
// likelihood word into a bid, in NCT-wei, within a bounty's [Rules]. It does no
// I/O: every function is pure and safe for concurrent use.
//
// # Units
//
// Bids are int64 amounts of NCT-wei ([NCT] = 10^18 wei), written as JSON
// integers. PolySwarm rejects a malicious or benign assertion whose bid is
// outside [min_allowed_bid, max_allowed_bid]; [DefaultRules] (0.0625 NCT to
// 1 NCT) apply when a bounty states none ([Rules.OrDefault]).
//
// # Strategies
//
// [Linear] maps a confidence in [0, 1] and [FromScore] a score in [0, 100]
// linearly onto [Min, Max]: Min + confidence × (Max − Min), or
// Min + score × (Max − Min) / 100, truncated toward Min. The number counts as
// its shortest decimal form, the digits its author wrote
// (strconv.FormatFloat(x, 'g', -1, 64)), not as the float64's exact binary
// value, and the amount is computed exactly in integers: within [DefaultRules]
// a confidence of 0.95 and a score of 95 both bid exactly
// 953125000000000000 wei. Out-of-range values are clamped (NaN counts as 0);
// the result never leaves [Min, Max] and never decreases when the confidence
// or score grows. [FromLikelihood] bids FromScore of a [Likelihood] word's
// score and falls back to Linear for [NotSpecified].
//
// # Decoding rules
//
// [Rules.UnmarshalJSON] accepts what bounty producers have sent: JSON integers
// of any size, integral floats such as 6.25e16, numeric strings, and null or a
// missing field for 0. A max_allowed_bid beyond int64 saturates at
// math.MaxInt64: every int64 bid within the saturated rules is within the real
// ones. A min_allowed_bid beyond int64 is an error, since no int64 bid could
// meet it. Negative and non-integral amounts are errors ([*RulesError],
// [ErrInvalidRules]).
package bid
