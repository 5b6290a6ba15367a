package bid_test

import (
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"regexp"
	"strings"
	"testing"

	"github.com/polyswarm/psengine/bid"
)

func FuzzRulesUnmarshalJSON(f *testing.F) {
	for _, s := range []string{
		`{"min_allowed_bid":62500000000000000,"max_allowed_bid":1000000000000000000}`,
		`{"min_allowed_bid":6.25e16,"max_allowed_bid":1e18}`,
		`{"min_allowed_bid":"62500000000000000","max_allowed_bid":"1e18"}`,
		`{"min_allowed_bid":null}`, `{}`, `null`, `[]`, `"x"`, `{"max_allowed_bid":1e400}`,
		`{"max_allowed_bid":123456789012345678901234567890}`, `{"min_allowed_bid":-1}`,
		`{"min_allowed_bid":0.5}`, `{"max_allowed_bid":"1e99999999999999999999"}`, `{"max_allowed_bid":15e-1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r bid.Rules
		err := r.UnmarshalJSON(data)
		if err != nil {
			if !errors.Is(err, bid.ErrInvalidRules) {
				t.Fatalf("UnmarshalJSON(%q) = %v; want an ErrInvalidRules", data, err)
			}
			if _, ok := errors.AsType[*bid.RulesError](err); !ok {
				t.Fatalf("UnmarshalJSON(%q) = %T; want *RulesError", data, err)
			}
			return
		}
		if r.Min < 0 || r.Max < 0 {
			t.Fatalf("UnmarshalJSON(%q) = %+v: negative amount", data, r)
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var back bid.Rules
		if err := json.Unmarshal(out, &back); err != nil || back != r {
			t.Fatalf("round trip: %+v -> %s -> %+v, %v", r, out, back, err)
		}
	})
}

var smallDecimal = regexp.MustCompile(`^[+-]?(\d*\.?\d*)([eE][+-]?\d{1,3})?$`)

// FuzzAmount checks the decoded value of one amount, raw and as a string,
// against math/big.
func FuzzAmount(f *testing.F) {
	for _, s := range []string{"0", "-0", "1", "62500000000000000", "6.25e16", "1e18", "1E+18", "100.000",
		"9223372036854775807", "9223372036854775808", "1e19", "9.2e18", "0.5", "15e-1", "1200e-2", "-1", "007", "+5", ".5e1", "5.", "1e", "e1", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, field := range []string{s, `"` + s + `"`} {
			var r bid.Rules
			err := json.Unmarshal([]byte(`{"max_allowed_bid":`+field+`}`), &r)
			if !json.Valid([]byte(field)) {
				continue // the JSON decoder rejected the document
			}
			if !smallDecimal.MatchString(strings.TrimSpace(s)) || len(s) > 200 {
				if err == nil && r.Max < 0 {
					t.Fatalf("%s decoded to %d", field, r.Max)
				}
				continue
			}
			want, ok := new(big.Rat).SetString(strings.TrimPrefix(strings.TrimSpace(s), "+"))
			switch {
			case !ok:
				if err == nil {
					t.Fatalf("%s: decoded to %d, but it is not a number", field, r.Max)
				}
			case want.Sign() < 0:
				if err == nil {
					t.Fatalf("%s: negative accepted as %d", field, r.Max)
				}
			case !want.IsInt():
				if err == nil {
					t.Fatalf("%s: fraction accepted as %d", field, r.Max)
				}
			case want.Num().Cmp(big.NewInt(math.MaxInt64)) > 0:
				if err != nil || r.Max != math.MaxInt64 {
					t.Fatalf("%s: = %d, %v; want saturation at MaxInt64", field, r.Max, err)
				}
			default:
				if err != nil || r.Max != want.Num().Int64() {
					t.Fatalf("%s: = %d, %v; want %s", field, r.Max, err, want.Num())
				}
			}
		}
	})
}
