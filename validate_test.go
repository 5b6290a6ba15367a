package psengine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/bid"
	"github.com/polyswarm/psengine/psenginetest"
)

func TestValidateProductName(t *testing.T) {
	b := psenginetest.Bounty([]byte("x"))
	for product, ok := range map[string]bool{
		"eicar-example": true, "clamav": true, "a.b_c-2": true, "x": true,
		"":   true, // absent: the engine's head fills it
		"-a": false, "a-": false, "a--b": false, "-": false, "A": false,
		"big engine": false, "été": false, "a/b": false,
	} {
		a := psengine.Analysis{Verdict: psengine.Unknown, Metadata: psengine.Metadata{Product: product}}
		if err := psengine.Validate(b, a); (err == nil) != ok {
			t.Errorf("product %q: Validate = %v, want ok=%v", product, err, ok)
		}
	}
}

func TestValidateScoreAndLikelihood(t *testing.T) {
	b := psenginetest.Bounty([]byte("x"))
	tests := []struct {
		name      string
		a         psengine.Analysis
		wantField string // "" when valid
	}{
		{"none", psengine.Analysis{}, ""},
		{"score 0", psengine.Analysis{Score: 0}, ""},
		{"score 33.3", psengine.Analysis{Score: 33.3}, ""},
		{"score 100", psengine.Analysis{Score: 100}, ""},
		{"score below 0", psengine.Analysis{Score: -0.5}, "Score"},
		{"score above 100", psengine.Analysis{Score: 100.01}, "Score"},
		{"score NaN", psengine.Analysis{Score: math.NaN()}, "Score"},
		{"score +Inf", psengine.Analysis{Score: math.Inf(1)}, "Score"},
		{"likelihood unset", psengine.Analysis{Likelihood: bid.NotSpecified}, ""},
		{"likelihood Likely", psengine.Analysis{Likelihood: bid.Likely}, ""},
		{"likelihood AlmostCertain", psengine.Analysis{Likelihood: bid.AlmostCertain}, ""},
		{"likelihood 42", psengine.Analysis{Likelihood: bid.Likelihood(42)}, "Likelihood"},
		{"likelihood -5", psengine.Analysis{Likelihood: bid.Likelihood(-5)}, "Likelihood"},
		{"all three", psengine.Analysis{Confidence: 0.9, Score: 90, Likelihood: bid.VeryLikely}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.a
			a.Verdict = psengine.Unknown
			err := psengine.Validate(b, a)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("Validate = %v; want nil", err)
				}
				return
			}
			ve, ok := errors.AsType[*psengine.ValidationError](err)
			if !ok || ve.Field != tt.wantField || !errors.Is(err, psengine.ErrInvalidAnalysis) {
				t.Fatalf("Validate = %v (%T); want a *ValidationError on %s", err, err, tt.wantField)
			}
		})
	}
}

// Score and Likelihood steer the bid only: the answer carries neither, and
// JSON round trips of the answer keep working; the analysis's own encoding
// carries every field.
func TestScoreAndLikelihoodStayOffTheWire(t *testing.T) {
	a := psengine.Analysis{Verdict: psengine.Malicious, Confidence: 0.95, Score: 95, Likelihood: bid.AlmostCertain,
		Bid: 953_125_000_000_000_000, Metadata: psengine.Metadata{MalwareFamily: "Eicar", Extra: map[string]any{"k": "v"}}}
	out, err := json.Marshal(psengine.NewAnswer(psengine.Bounty{}, a))
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"verdict":"malicious","bid":953125000000000000,"metadata":{"confidence":0.95,"k":"v","malware_family":"Eicar"}}`
	if string(out) != want {
		t.Errorf("the answer = %s; want %s", out, want)
	}
	var back psengine.Answer
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	wire := a
	wire.Score, wire.Likelihood = 0, bid.NotSpecified
	if diff := cmp.Diff(wire, back.Analysis, psenginetest.AnalysisOptions); diff != "" {
		t.Errorf("the answer's round trip (-want +got):\n%s", diff)
	}

	own, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var all psengine.Analysis
	if err := json.Unmarshal(own, &all); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, all, psenginetest.AnalysisOptions); diff != "" {
		t.Errorf("the analysis's own round trip through %s (-want +got):\n%s", own, diff)
	}
	var fromAnswer psengine.Analysis // an answer reads as an analysis too
	if err := json.Unmarshal(out, &fromAnswer); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wire, fromAnswer, psenginetest.AnalysisOptions); diff != "" {
		t.Errorf("an answer read as an analysis (-want +got):\n%s", diff)
	}
}

// An answer over MaxAnswerSize is refused, and the engine answers unknown
// with the reason instead of delivering it.
func TestOversizedAnswer(t *testing.T) {
	b := psenginetest.Bounty([]byte("x"))
	domains := make([]string, 0, 5000)
	for i := range 5000 {
		domains = append(domains, fmt.Sprintf("host-%04d.example.com", i))
	}
	big := psengine.Analysis{Verdict: psengine.Malicious, Bid: b.Rules.OrDefault().Min, Metadata: psengine.Metadata{Domains: domains}}
	var verr *psengine.ValidationError
	if err := psengine.Validate(b, big); !errors.As(err, &verr) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("Validate = %v, want a size ValidationError", err)
	}
	huge := psengine.Analysis{Verdict: psengine.Malicious, Bid: b.Rules.OrDefault().Min,
		Metadata: psengine.Metadata{Extra: map[string]any{"report": strings.Repeat("x", psengine.MaxAnswerSize)}}}
	if err := psengine.Validate(b, huge); !errors.As(err, &verr) {
		t.Fatalf("Validate(huge extra) = %v, want a size ValidationError", err)
	}
	small := psengine.Analysis{Verdict: psengine.Malicious, Bid: b.Rules.OrDefault().Min, Metadata: psengine.Metadata{Domains: domains[:100]}}
	if err := psengine.Validate(b, small); err != nil {
		t.Fatalf("Validate(100 domains) = %v", err)
	}

	e := psenginetest.Engine(t, psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
		return psengine.Analysis{Verdict: psengine.Malicious, Metadata: psengine.Metadata{Domains: domains}}, nil
	}))
	res, err := e.AnalyzeBounty(context.Background(), b)
	if !errors.Is(err, psengine.ErrInvalidAnalysis) || res.Analysis.Verdict != psengine.Unknown || !strings.Contains(res.Analysis.Metadata.Error, "limit") {
		t.Fatalf("engine: %v, %+v; want unknown with the reason", err, res.Analysis.Metadata.Error)
	}
}
