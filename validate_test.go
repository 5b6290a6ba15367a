package psengine_test

import (
	"testing"

	"github.com/polyswarm/psengine"
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
