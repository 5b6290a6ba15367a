package bid

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// Likelihood is a probability word from the US DNI's ICD 203 (Analytic
// Standards), as PolySwarm uses them for bids. Its value is its score on the
// 0-100 scale; the zero value is NotSpecified (no preference).
type Likelihood int

// The ICD 203 likelihood words. The synonyms ParseLikelihood accepts are noted.
const (
	NotSpecified   Likelihood = 0  // no bid preference: the strategy's default
	AlmostNoChance Likelihood = 5  // also "remote"
	VeryUnlikely   Likelihood = 15 // also "highly improbable"
	Unlikely       Likelihood = 30 // also "improbable"
	RoughlyEven    Likelihood = 50 // "roughly even chance", "roughly even odds"
	Likely         Likelihood = 70 // also "probable"
	VeryLikely     Likelihood = 85 // also "highly probable"
	AlmostCertain  Likelihood = 95 // also "almost certainly", "nearly certain"
)

// ErrUnknownLikelihood is wrapped by the error ParseLikelihood returns for a
// word it does not know, and by MarshalText for a value that is not one of the
// constants.
var ErrUnknownLikelihood = errors.New("bid: unknown likelihood")

var likelihoodNames = map[Likelihood]string{
	NotSpecified:   "Not Specified",
	AlmostNoChance: "Almost No Chance",
	VeryUnlikely:   "Very Unlikely",
	Unlikely:       "Unlikely",
	RoughlyEven:    "Roughly Even Chance",
	Likely:         "Likely",
	VeryLikely:     "Very Likely",
	AlmostCertain:  "Almost Certain",
}

// likelihoodWords maps every accepted spelling, with case folded and spaces,
// '-' and '_' removed, to its Likelihood.
var likelihoodWords = map[string]Likelihood{
	"notspecified":      NotSpecified,
	"almostnochance":    AlmostNoChance,
	"remote":            AlmostNoChance,
	"veryunlikely":      VeryUnlikely,
	"highlyimprobable":  VeryUnlikely,
	"unlikely":          Unlikely,
	"improbable":        Unlikely,
	"roughlyevenchance": RoughlyEven,
	"roughlyevenodds":   RoughlyEven,
	"roughlyeven":       RoughlyEven,
	"likely":            Likely,
	"probable":          Likely,
	"verylikely":        VeryLikely,
	"highlyprobable":    VeryLikely,
	"almostcertain":     AlmostCertain,
	"almostcertainly":   AlmostCertain,
	"nearlycertain":     AlmostCertain,
}

// ParseLikelihood returns the Likelihood a word names: any ICD 203 word or
// synonym listed with the constants, the constant names themselves, and the
// String forms. Case does not matter, and spaces, '-' and '_' are
// interchangeable (they are ignored): "Almost No Chance", "almost-no-chance",
// "ALMOST_NO_CHANCE" and "AlmostNoChance" are all AlmostNoChance. Anything
// else, the empty string included, is an error wrapping [ErrUnknownLikelihood].
func ParseLikelihood(word string) (Likelihood, error) {
	key := strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || unicode.IsSpace(r) {
			return -1
		}
		return unicode.ToLower(r)
	}, word)
	if l, ok := likelihoodWords[key]; ok {
		return l, nil
	}
	if len(word) > 64 {
		word = word[:64] + "..."
	}
	return NotSpecified, fmt.Errorf("%w: %q", ErrUnknownLikelihood, word)
}

// String returns the ICD 203 words, such as "Almost Certain", or
// "Likelihood(n)" for a value that is not one of the constants.
func (l Likelihood) String() string {
	if s, ok := likelihoodNames[l]; ok {
		return s
	}
	return "Likelihood(" + strconv.Itoa(int(l)) + ")"
}

// MarshalText returns the String form; it fails for a value that is not one of
// the constants.
func (l Likelihood) MarshalText() ([]byte, error) {
	s, ok := likelihoodNames[l]
	if !ok {
		return nil, fmt.Errorf("%w: Likelihood(%d)", ErrUnknownLikelihood, int(l))
	}
	return []byte(s), nil
}

// UnmarshalText parses text with ParseLikelihood.
func (l *Likelihood) UnmarshalText(text []byte) error {
	v, err := ParseLikelihood(string(text))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// Score returns the likelihood on the 0-100 scale (Likely is 70). ok is false
// for NotSpecified and for values that are not one of the constants.
func (l Likelihood) Score() (score float64, ok bool) {
	if l == NotSpecified {
		return 0, false
	}
	if _, known := likelihoodNames[l]; !known {
		return 0, false
	}
	return float64(l), true
}

// Confidence returns Score/100, a confidence in [0, 1] (Likely is 0.7).
func (l Likelihood) Confidence() (c float64, ok bool) {
	s, ok := l.Score()
	return s / 100, ok
}

// FromLikelihood bids FromScore(r, score of l) (exact: Likely bids exactly 70%
// of the span above Min), or Linear(r, fallback) when l has no score
// (NotSpecified or not one of the constants).
func FromLikelihood(r Rules, l Likelihood, fallback float64) int64 {
	if s, ok := l.Score(); ok {
		return FromScore(r, s)
	}
	return Linear(r, fallback)
}
