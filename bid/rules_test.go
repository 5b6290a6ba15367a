package bid_test

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/polyswarm/psengine/bid"
)

func TestRulesUnmarshalJSON(t *testing.T) {
	const maxInt = math.MaxInt64
	tests := []struct {
		name string
		in   string
		want bid.Rules
	}{
		{"integers", `{"min_allowed_bid":62500000000000000,"max_allowed_bid":1000000000000000000}`, bid.DefaultRules},
		{"floats", `{"min_allowed_bid":6.25e16,"max_allowed_bid":1e18}`, bid.DefaultRules},
		{"float forms", `{"min_allowed_bid":62500000000000000.000,"max_allowed_bid":1.0E+18}`, bid.DefaultRules},
		{"strings", `{"min_allowed_bid":"62500000000000000","max_allowed_bid":" 1e18 "}`, bid.DefaultRules},
		{"plus sign in a string", `{"min_allowed_bid":"+5","max_allowed_bid":"0010"}`, bid.Rules{Min: 5, Max: 10}},
		{"integral after exponent", `{"min_allowed_bid":1.5e1,"max_allowed_bid":1200e-2}`, bid.Rules{Min: 15, Max: 12}},
		{"nulls", `{"min_allowed_bid":null,"max_allowed_bid":null}`, bid.Rules{}},
		{"missing", `{"other":1}`, bid.Rules{}},
		{"empty", `{}`, bid.Rules{}},
		{"zeros", `{"min_allowed_bid":-0,"max_allowed_bid":0.0e5}`, bid.Rules{}},
		{"zero with a huge exponent", `{"max_allowed_bid":0e99999999999999999999}`, bid.Rules{}},
		{"unknown fields ignored", `{"min_allowed_bid":1,"max_allowed_bid":2,"max_bid_per_day":{"x":[1,2]}}`, bid.Rules{Min: 1, Max: 2}},
		{"field names fold case", `{"MIN_ALLOWED_BID":1,"Max_Allowed_Bid":2}`, bid.Rules{Min: 1, Max: 2}},
		{"max at MaxInt64", `{"min_allowed_bid":1,"max_allowed_bid":9223372036854775807}`, bid.Rules{Min: 1, Max: maxInt}},
		{"min at MaxInt64", `{"min_allowed_bid":9223372036854775807}`, bid.Rules{Min: maxInt}},
		{"max just beyond int64 saturates", `{"min_allowed_bid":1,"max_allowed_bid":9223372036854775808}`, bid.Rules{Min: 1, Max: maxInt}},
		{"max far beyond int64 saturates", `{"min_allowed_bid":1,"max_allowed_bid":123456789012345678901234567890}`, bid.Rules{Min: 1, Max: maxInt}},
		{"max as a huge float saturates", `{"min_allowed_bid":1,"max_allowed_bid":1e400}`, bid.Rules{Min: 1, Max: maxInt}},
		{"max with a huge exponent saturates", `{"min_allowed_bid":1,"max_allowed_bid":"1e99999999999999999999999"}`, bid.Rules{Min: 1, Max: maxInt}},
		{"max 1e19 saturates", `{"max_allowed_bid":1e19}`, bid.Rules{Max: maxInt}},
		{"max 9.3e18 saturates", `{"max_allowed_bid":9.3e18}`, bid.Rules{Max: maxInt}},
		{"max 9.2e18 fits", `{"max_allowed_bid":9.2e18}`, bid.Rules{Max: 9_200_000_000_000_000_000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got bid.Rules
			if err := json.Unmarshal([]byte(tt.in), &got); err != nil {
				t.Fatalf("Unmarshal(%s) error: %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Unmarshal(%s) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestRulesUnmarshalJSONErrors(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantField string
		wantText  string
	}{
		{"negative", `{"min_allowed_bid":-5,"max_allowed_bid":10}`, "min_allowed_bid", "negative"},
		{"negative string", `{"min_allowed_bid":1,"max_allowed_bid":"-1e18"}`, "max_allowed_bid", "negative"},
		{"fraction", `{"min_allowed_bid":0.5}`, "min_allowed_bid", "not an integer"},
		{"fraction after exponent", `{"max_allowed_bid":15e-1}`, "max_allowed_bid", "not an integer"},
		{"tiny", `{"max_allowed_bid":1e-99999999999999}`, "max_allowed_bid", "not an integer"},
		{"negative fraction", `{"max_allowed_bid":-0.5}`, "max_allowed_bid", "negative"},
		{"min beyond int64", `{"min_allowed_bid":1e20,"max_allowed_bid":1e21}`, "min_allowed_bid", "exceeds the int64 range"},
		{"bool", `{"min_allowed_bid":true}`, "min_allowed_bid", "not a number"},
		{"array", `{"max_allowed_bid":[1]}`, "max_allowed_bid", "not a number"},
		{"object", `{"max_allowed_bid":{"v":1}}`, "max_allowed_bid", "not a number"},
		{"word", `{"min_allowed_bid":"lots"}`, "min_allowed_bid", "not a decimal number"},
		{"empty string", `{"min_allowed_bid":""}`, "min_allowed_bid", "not a decimal number"},
		{"underscores", `{"min_allowed_bid":"1_000"}`, "min_allowed_bid", "not a decimal number"},
		{"hex", `{"min_allowed_bid":"0x10"}`, "min_allowed_bid", "not a decimal number"},
		{"dangling exponent", `{"min_allowed_bid":"1e"}`, "min_allowed_bid", "not a decimal number"},
		{"two points", `{"min_allowed_bid":"1.2.3"}`, "min_allowed_bid", "not a decimal number"},
		{"lone sign", `{"min_allowed_bid":"-"}`, "min_allowed_bid", "not a decimal number"},
		{"not an object", `5`, "", "not a JSON object"},
		{"string instead of object", `"rules"`, "", "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := bid.Rules{Min: 7, Max: 8}
			err := json.Unmarshal([]byte(tt.in), &got)
			if !errors.Is(err, bid.ErrInvalidRules) {
				t.Fatalf("Unmarshal(%s) = %v; want ErrInvalidRules", tt.in, err)
			}
			re, ok := errors.AsType[*bid.RulesError](err)
			if !ok {
				t.Fatalf("Unmarshal(%s) = %T; want *RulesError", tt.in, err)
			}
			if re.Field != tt.wantField || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Unmarshal(%s) = %q (field %q); want field %q and text %q", tt.in, err, re.Field, tt.wantField, tt.wantText)
			}
			if diff := cmp.Diff(bid.Rules{Min: 7, Max: 8}, got); diff != "" {
				t.Errorf("a failed Unmarshal changed the rules (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRulesErrorMessage(t *testing.T) {
	var r bid.Rules
	err := json.Unmarshal([]byte(`{"min_allowed_bid": -12}`), &r)
	if want := "bid: invalid rules: min_allowed_bid -12: negative"; err == nil || err.Error() != want {
		t.Errorf("error = %v; want %q", err, want)
	}
	long := `{"max_allowed_bid":"` + strings.Repeat("9", 200) + `x"}`
	err = json.Unmarshal([]byte(long), &r)
	if err == nil || len(err.Error()) > 150 {
		t.Errorf("error for a long input = %q; want it short", err)
	}
	err = bid.Rules{Min: 5, Max: 4}.Validate()
	if want := "bid: invalid rules: [5, 4]: max_allowed_bid is below min_allowed_bid"; err == nil || err.Error() != want {
		t.Errorf("Validate error = %v; want %q", err, want)
	}
}

// A bounty carries rules as a field; a null or absent field leaves the zero
// Rules, which OrDefault turns into DefaultRules.
func TestRulesInsideABounty(t *testing.T) {
	type bounty struct {
		ID    json.Number `json:"id"`
		Rules bid.Rules   `json:"rules"`
		Ptr   *bid.Rules  `json:"rules_ptr"`
	}
	tests := []struct {
		in   string
		want bounty
	}{
		{`{"id":1,"rules":{"min_allowed_bid":"1","max_allowed_bid":2e0}}`, bounty{ID: "1", Rules: bid.Rules{Min: 1, Max: 2}}},
		{`{"id":2,"rules":null,"rules_ptr":null}`, bounty{ID: "2"}},
		{`{"id":3}`, bounty{ID: "3"}},
		{`{"id":4,"rules_ptr":{"max_allowed_bid":10}}`, bounty{ID: "4", Ptr: &bid.Rules{Max: 10}}},
	}
	for _, tt := range tests {
		var got bounty
		if err := json.Unmarshal([]byte(tt.in), &got); err != nil {
			t.Fatalf("Unmarshal(%s): %v", tt.in, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Unmarshal(%s) (-want +got):\n%s", tt.in, diff)
		}
	}
	var b bounty
	if err := json.Unmarshal([]byte(`{"rules":{"min_allowed_bid":1.5}}`), &b); !errors.Is(err, bid.ErrInvalidRules) {
		t.Errorf("a bounty with bad rules: %v; want ErrInvalidRules", err)
	}
}

func TestRulesMarshalJSON(t *testing.T) {
	tests := []struct {
		in   bid.Rules
		want string
	}{
		{bid.DefaultRules, `{"min_allowed_bid":62500000000000000,"max_allowed_bid":1000000000000000000}`},
		{bid.Rules{Min: 1, Max: math.MaxInt64}, `{"min_allowed_bid":1,"max_allowed_bid":9223372036854775807}`},
		{bid.Rules{}, `{"min_allowed_bid":0,"max_allowed_bid":0}`},
	}
	for _, tt := range tests {
		got, err := json.Marshal(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, string(got)); diff != "" {
			t.Errorf("Marshal(%+v) (-want +got):\n%s", tt.in, diff)
		}
		// Also through a pointer and inside a struct.
		wrapped, _ := json.Marshal(struct{ R *bid.Rules }{&tt.in})
		if want := `{"R":` + tt.want + `}`; string(wrapped) != want {
			t.Errorf("Marshal(&rules) = %s; want %s", wrapped, want)
		}
		var back bid.Rules
		if err := json.Unmarshal(got, &back); err != nil || back != tt.in {
			t.Errorf("round trip of %+v = %+v, %v", tt.in, back, err)
		}
	}
}

func TestRulesOrDefault(t *testing.T) {
	d := bid.DefaultRules
	tests := []struct {
		name string
		in   bid.Rules
		want bid.Rules
	}{
		{"none", bid.Rules{}, d},
		{"both kept", bid.Rules{Min: 3, Max: 4}, bid.Rules{Min: 3, Max: 4}},
		{"invalid pair kept", bid.Rules{Min: 4, Max: 3}, bid.Rules{Min: 4, Max: 3}},
		{"only max", bid.Rules{Max: 2 * bid.NCT}, bid.Rules{Min: d.Min, Max: 2 * bid.NCT}},
		{"only max, below the default min", bid.Rules{Max: 1000}, bid.Rules{Min: 1000, Max: 1000}},
		{"only min", bid.Rules{Min: 1000}, bid.Rules{Min: 1000, Max: d.Max}},
		{"only min, above the default max", bid.Rules{Min: 3 * bid.NCT}, bid.Rules{Min: 3 * bid.NCT, Max: 3 * bid.NCT}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.OrDefault()
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(%+v).OrDefault() (-want +got):\n%s", tt.in, diff)
			}
			if tt.in.Validate() == nil && got != tt.in {
				t.Errorf("OrDefault changed valid rules")
			}
			if tt.name != "invalid pair kept" && got.Validate() != nil {
				t.Errorf("OrDefault result %+v is invalid: %v", got, got.Validate())
			}
		})
	}
}

func TestRulesValidate(t *testing.T) {
	tests := []struct {
		in bid.Rules
		ok bool
	}{
		{bid.DefaultRules, true},
		{bid.Rules{Min: 1, Max: 1}, true},
		{bid.Rules{Min: 1, Max: math.MaxInt64}, true},
		{bid.Rules{}, false},
		{bid.Rules{Min: 0, Max: 10}, false},
		{bid.Rules{Min: -1, Max: 10}, false},
		{bid.Rules{Min: 10, Max: 9}, false},
		{bid.Rules{Min: math.MinInt64, Max: math.MaxInt64}, false},
	}
	for _, tt := range tests {
		err := tt.in.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("(%+v).Validate() = %v; want ok=%v", tt.in, err, tt.ok)
		}
		if err != nil {
			if re, ok := errors.AsType[*bid.RulesError](err); !ok || re.Rules != tt.in || !errors.Is(err, bid.ErrInvalidRules) {
				t.Errorf("(%+v).Validate() = %#v; want a *RulesError with the rules", tt.in, err)
			}
		}
	}
}

func TestRulesClampContains(t *testing.T) {
	r := bid.Rules{Min: 10, Max: 20}
	tests := []struct {
		w        int64
		clamp    int64
		contains bool
	}{
		{math.MinInt64, 10, false}, {-5, 10, false}, {9, 10, false}, {10, 10, true},
		{15, 15, true}, {20, 20, true}, {21, 20, false}, {math.MaxInt64, 20, false},
	}
	for _, tt := range tests {
		if got := r.Clamp(tt.w); got != tt.clamp {
			t.Errorf("Clamp(%d) = %d; want %d", tt.w, got, tt.clamp)
		}
		if got := r.Contains(tt.w); got != tt.contains {
			t.Errorf("Contains(%d) = %v; want %v", tt.w, got, tt.contains)
		}
	}
	if got := (bid.Rules{Min: 20, Max: 10}).Clamp(15); got != 20 {
		t.Errorf("Clamp on inverted rules = %d; want Min", got)
	}
}
