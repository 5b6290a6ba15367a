package psengine_test

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/bid"
	"github.com/polyswarm/psengine/psenginetest"
)

func TestLinearBid(t *testing.T) {
	r := bid.DefaultRules // Min 62.5e15, span 937.5e15
	tests := []struct {
		name string
		a    psengine.Analysis
		want int64
	}{
		{"nothing set bids the minimum", psengine.Analysis{}, 62_500_000_000_000_000},
		{"confidence 0.95", psengine.Analysis{Confidence: 0.95}, 953_125_000_000_000_000},
		{"confidence 0.7", psengine.Analysis{Confidence: 0.7}, 718_750_000_000_000_000},
		{"score 95", psengine.Analysis{Score: 95}, 953_125_000_000_000_000},
		{"score 33.3", psengine.Analysis{Score: 33.3}, 374_687_500_000_000_000},
		{"score 0.5", psengine.Analysis{Score: 0.5}, 67_187_500_000_000_000},
		{"likelihood AlmostCertain (95)", psengine.Analysis{Likelihood: bid.AlmostCertain}, 953_125_000_000_000_000},
		{"likelihood Likely (70)", psengine.Analysis{Likelihood: bid.Likely}, 718_750_000_000_000_000},
		{"likelihood Remote (5)", psengine.Analysis{Likelihood: bid.AlmostNoChance}, 109_375_000_000_000_000},
		{"confidence wins over score and likelihood", psengine.Analysis{Confidence: 0.1, Score: 95, Likelihood: bid.AlmostCertain}, 156_250_000_000_000_000},
		{"score wins over likelihood", psengine.Analysis{Score: 10, Likelihood: bid.AlmostCertain}, 156_250_000_000_000_000},
		{"confidence 1", psengine.Analysis{Confidence: 1, Score: 5}, 1_000_000_000_000_000_000},
		{"score 100", psengine.Analysis{Score: 100}, 1_000_000_000_000_000_000},
		{"unknown likelihood bids the minimum", psengine.Analysis{Likelihood: bid.Likelihood(42)}, 62_500_000_000_000_000},
		{"NaN confidence bids the minimum", psengine.Analysis{Confidence: math.NaN(), Score: 95}, 62_500_000_000_000_000},
	}
	for _, tt := range tests {
		if got := psengine.LinearBid(r, tt.a); got != tt.want {
			t.Errorf("%s: LinearBid(%+v) = %d; want %d", tt.name, tt.a, got, tt.want)
		}
	}
}

// The engine's bid stage uses LinearBid by default: a scanner that answers
// with a score or a likelihood word gets the exact bid for it.
func TestEngineBidsFromScoreAndLikelihood(t *testing.T) {
	for _, tt := range []struct {
		name string
		a    psengine.Analysis
	}{
		{"confidence", psengine.Analysis{Verdict: psengine.Malicious, Confidence: 0.95}},
		{"score", psengine.Analysis{Verdict: psengine.Malicious, Score: 95}},
		{"likelihood", psengine.Analysis{Verdict: psengine.Benign, Likelihood: bid.AlmostCertain}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
				return tt.a, nil
			})
			e := psenginetest.Engine(t, s, psengine.WithGetenv(func(string) string { return "" }))
			res := psenginetest.Analyze(t, e, []byte("x"))
			if res.Err != nil || res.Analysis.Bid != 953_125_000_000_000_000 {
				t.Errorf("bid = %d, err %v; want 953125000000000000", res.Analysis.Bid, res.Err)
			}
		})
	}
}

func ExampleLinearBid() {
	r := bid.DefaultRules // 0.0625 NCT to 1 NCT
	fmt.Println(psengine.LinearBid(r, psengine.Analysis{Confidence: 0.95}))
	fmt.Println(psengine.LinearBid(r, psengine.Analysis{Score: 95}))
	fmt.Println(psengine.LinearBid(r, psengine.Analysis{Likelihood: bid.AlmostCertain}))
	fmt.Println(psengine.LinearBid(r, psengine.Analysis{Score: 33.3}))
	fmt.Println(psengine.LinearBid(r, psengine.Analysis{}))
	// Output:
	// 953125000000000000
	// 953125000000000000
	// 953125000000000000
	// 374687500000000000
	// 62500000000000000
}
