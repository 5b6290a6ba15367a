package bid_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/polyswarm/psengine/bid"
)

func TestParseLikelihood(t *testing.T) {
	tests := map[bid.Likelihood][]string{
		bid.AlmostNoChance: {"Almost No Chance", "almost no chance", "ALMOST_NO_CHANCE", "almost-no-chance", "AlmostNoChance", "Remote", "REMOTE", "  almost   no\tchance "},
		bid.VeryUnlikely:   {"Very Unlikely", "very_unlikely", "Highly Improbable", "highly-improbable", "VeryUnlikely"},
		bid.Unlikely:       {"Unlikely", "unlikely", "Improbable", "IMPROBABLE"},
		bid.RoughlyEven:    {"Roughly Even Chance", "roughly even odds", "Roughly-Even-Odds", "ROUGHLY_EVEN_CHANCE", "RoughlyEven"},
		bid.Likely:         {"Likely", "likely", "Probable", "probable"},
		bid.VeryLikely:     {"Very Likely", "very-likely", "Highly Probable", "HIGHLY_PROBABLE", "VeryLikely"},
		bid.AlmostCertain:  {"Almost Certain", "almost certainly", "Nearly Certain", "nearly_certain", "AlmostCertain"},
		bid.NotSpecified:   {"Not Specified", "not_specified", "NOT-SPECIFIED", "NotSpecified"},
	}
	for want, words := range tests {
		for _, w := range words {
			got, err := bid.ParseLikelihood(w)
			if err != nil || got != want {
				t.Errorf("ParseLikelihood(%q) = %v, %v; want %v", w, got, err, want)
			}
		}
	}
}

func TestParseLikelihoodUnknown(t *testing.T) {
	for _, w := range []string{"", " ", "-", "maybe", "likelyy", "very", "certain", "70", "almost no", "unspecified", "Likely!", strings.Repeat("x", 1000)} {
		got, err := bid.ParseLikelihood(w)
		if !errors.Is(err, bid.ErrUnknownLikelihood) || got != bid.NotSpecified {
			t.Errorf("ParseLikelihood(%q) = %v, %v; want ErrUnknownLikelihood", w, got, err)
		}
		if err != nil && len(err.Error()) > 120 {
			t.Errorf("error message for a %d-byte word is %d bytes long", len(w), len(err.Error()))
		}
	}
}

func TestLikelihoodScores(t *testing.T) {
	type row struct {
		Name       string
		Score      float64
		Confidence float64
		OK         bool
	}
	var got []row
	for _, l := range []bid.Likelihood{bid.NotSpecified, bid.AlmostNoChance, bid.VeryUnlikely, bid.Unlikely, bid.RoughlyEven, bid.Likely, bid.VeryLikely, bid.AlmostCertain, bid.Likelihood(42)} {
		s, ok := l.Score()
		c, ok2 := l.Confidence()
		if ok != ok2 {
			t.Errorf("%v: Score ok %v, Confidence ok %v", l, ok, ok2)
		}
		got = append(got, row{l.String(), s, c, ok})
	}
	want := []row{
		{"Not Specified", 0, 0, false},
		{"Almost No Chance", 5, 0.05, true},
		{"Very Unlikely", 15, 0.15, true},
		{"Unlikely", 30, 0.3, true},
		{"Roughly Even Chance", 50, 0.5, true},
		{"Likely", 70, 0.7, true},
		{"Very Likely", 85, 0.85, true},
		{"Almost Certain", 95, 0.95, true},
		{"Likelihood(42)", 0, 0, false},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestLikelihoodText(t *testing.T) {
	type config struct {
		L bid.Likelihood `json:"likelihood"`
	}
	for _, l := range []bid.Likelihood{bid.NotSpecified, bid.AlmostNoChance, bid.RoughlyEven, bid.AlmostCertain} {
		b, err := json.Marshal(config{l})
		if err != nil {
			t.Fatal(err)
		}
		var back config
		if err := json.Unmarshal(b, &back); err != nil || back.L != l {
			t.Errorf("round trip of %v through %s = %v, %v", l, b, back.L, err)
		}
	}
	var c config
	if err := json.Unmarshal([]byte(`{"likelihood":"highly-probable"}`), &c); err != nil || c.L != bid.VeryLikely {
		t.Errorf("Unmarshal(highly-probable) = %v, %v; want Very Likely", c.L, err)
	}
	if err := json.Unmarshal([]byte(`{"likelihood":"perhaps"}`), &c); !errors.Is(err, bid.ErrUnknownLikelihood) {
		t.Errorf("Unmarshal(perhaps) = %v; want ErrUnknownLikelihood", err)
	}
	if _, err := json.Marshal(config{bid.Likelihood(42)}); !errors.Is(err, bid.ErrUnknownLikelihood) {
		t.Errorf("Marshal(Likelihood(42)) = %v; want ErrUnknownLikelihood", err)
	}
	if b, _ := json.Marshal(config{bid.Likely}); string(b) != `{"likelihood":"Likely"}` {
		t.Errorf("Marshal(Likely) = %s", b)
	}
}

func TestFromLikelihood(t *testing.T) {
	d := bid.DefaultRules
	tests := []struct {
		l        bid.Likelihood
		fallback float64
		want     int64
	}{
		{bid.AlmostNoChance, 0.9, 109_375_000_000_000_000},
		{bid.Likely, 0.9, 718_750_000_000_000_000},
		{bid.AlmostCertain, 0, 953_125_000_000_000_000},
		{bid.NotSpecified, 0.5, 531_250_000_000_000_000},
		{bid.NotSpecified, 2, d.Max},
		{bid.Likelihood(42), 0, d.Min},
	}
	for _, tt := range tests {
		if got := bid.FromLikelihood(d, tt.l, tt.fallback); got != tt.want {
			t.Errorf("FromLikelihood(%v, %v) = %d; want %d", tt.l, tt.fallback, got, tt.want)
		}
	}
	// Likelihood bids rise with the likelihood.
	prev := int64(0)
	for _, l := range []bid.Likelihood{bid.AlmostNoChance, bid.VeryUnlikely, bid.Unlikely, bid.RoughlyEven, bid.Likely, bid.VeryLikely, bid.AlmostCertain} {
		got := bid.FromLikelihood(wide, l, 0)
		if got <= prev || !wide.Contains(got) {
			t.Errorf("FromLikelihood(wide, %v) = %d after %d", l, got, prev)
		}
		prev = got
	}
}

func FuzzParseLikelihood(f *testing.F) {
	for _, s := range []string{"Almost No Chance", "remote", "roughly_even_odds", "NOT-SPECIFIED", "", "likely ", "İ", "\u00a0likely"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, word string) {
		l, err := bid.ParseLikelihood(word)
		if err != nil {
			if !errors.Is(err, bid.ErrUnknownLikelihood) || l != bid.NotSpecified {
				t.Fatalf("ParseLikelihood(%q) = %v, %v", word, l, err)
			}
			return
		}
		back, err := bid.ParseLikelihood(l.String())
		if err != nil || back != l {
			t.Fatalf("ParseLikelihood(%q) = %v, whose String %q parses as %v, %v", word, l, l.String(), back, err)
		}
	})
}
