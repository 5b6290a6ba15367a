package bid_test

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/polyswarm/psengine/bid"
)

func ExampleLinear() {
	r := bid.DefaultRules // 0.0625 NCT to 1 NCT
	for _, c := range []float64{0, 0.5, 0.95, 1, 1.7} {
		fmt.Printf("confidence %v: %d wei\n", c, bid.Linear(r, c))
	}
	// Linear reads 0.95 as written, although the float64 nearest 0.95 is a
	// hair below it, and FromScore(r, 95) bids the same.
	fmt.Printf("score 95: %d wei\n", bid.FromScore(r, 95))
	// Output:
	// confidence 0: 62500000000000000 wei
	// confidence 0.5: 531250000000000000 wei
	// confidence 0.95: 953125000000000000 wei
	// confidence 1: 1000000000000000000 wei
	// confidence 1.7: 1000000000000000000 wei
	// score 95: 953125000000000000 wei
}

func ExampleFromScore() {
	r := bid.Rules{Min: 100, Max: 200}
	fmt.Println(bid.FromScore(r, 0), bid.FromScore(r, 33.3), bid.FromScore(r, 70), bid.FromScore(r, 100), bid.FromScore(r, 250))
	// Output:
	// 100 133 170 200 200
}

func ExampleFromLikelihood() {
	r := bid.DefaultRules
	l, err := bid.ParseLikelihood("highly probable")
	if err != nil {
		panic(err)
	}
	fmt.Println(l, bid.FromLikelihood(r, l, 0.5))
	fmt.Println(bid.NotSpecified, bid.FromLikelihood(r, bid.NotSpecified, 0.5))
	// Output:
	// Very Likely 859375000000000000
	// Not Specified 531250000000000000
}

func ExampleParseLikelihood() {
	for _, w := range []string{"Almost No Chance", "roughly-even-odds", "NEARLY_CERTAIN", "perhaps"} {
		l, err := bid.ParseLikelihood(w)
		score, _ := l.Score()
		fmt.Printf("%q: %v (%v) %v\n", w, l, score, err)
	}
	// Output:
	// "Almost No Chance": Almost No Chance (5) <nil>
	// "roughly-even-odds": Roughly Even Chance (50) <nil>
	// "NEARLY_CERTAIN": Almost Certain (95) <nil>
	// "perhaps": Not Specified (0) bid: unknown likelihood: "perhaps"
}

func ExampleRules_UnmarshalJSON() {
	var bounty struct {
		Rules bid.Rules `json:"rules"`
	}
	payload := `{"rules": {"min_allowed_bid": 6.25e16, "max_allowed_bid": "1000000000000000000"}}`
	if err := json.Unmarshal([]byte(payload), &bounty); err != nil {
		panic(err)
	}
	fmt.Println(bounty.Rules == bid.DefaultRules)

	err := json.Unmarshal([]byte(`{"rules": {"min_allowed_bid": 0.5}}`), &bounty)
	var re *bid.RulesError
	fmt.Println(errors.As(err, &re), re.Field, err)

	out, _ := json.Marshal(bounty.Rules)
	fmt.Println(string(out))
	// Output:
	// true
	// true min_allowed_bid bid: invalid rules: min_allowed_bid 0.5: not an integer
	// {"min_allowed_bid":62500000000000000,"max_allowed_bid":1000000000000000000}
}

func ExampleRules_OrDefault() {
	fmt.Println(bid.Rules{}.OrDefault())
	fmt.Println(bid.Rules{Max: 2 * bid.NCT}.OrDefault())
	fmt.Println(bid.Rules{Max: 1000}.OrDefault())
	// Output:
	// {62500000000000000 1000000000000000000}
	// {62500000000000000 2000000000000000000}
	// {1000 1000}
}

func ExampleRules_Validate() {
	fmt.Println(bid.DefaultRules.Validate())
	fmt.Println(bid.Rules{Min: 0, Max: 10}.Validate())
	err := bid.Rules{Min: 10, Max: 5}.Validate()
	fmt.Println(errors.Is(err, bid.ErrInvalidRules), err)
	// Output:
	// <nil>
	// bid: invalid rules: [0, 10]: min_allowed_bid must be positive
	// true bid: invalid rules: [10, 5]: max_allowed_bid is below min_allowed_bid
}

func ExampleRules_Clamp() {
	r := bid.Rules{Min: 10, Max: 20}
	fmt.Println(r.Clamp(5), r.Clamp(15), r.Clamp(25), r.Contains(25))
	// Output:
	// 10 15 20 false
}
