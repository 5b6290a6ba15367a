package engine_test

import (
	"fmt"

	"github.com/polyswarm/psengine/examples/clamav/clamd"
	"github.com/polyswarm/psengine/examples/clamav/engine"
)

// How clamd's replies become answers.
func ExampleClassify() {
	for _, s := range []string{
		"stream: Win.Trojan.Agent-1.UNOFFICIAL FOUND",
		"stream: Heuristics.Encrypted.Zip FOUND",
		"stream: OK",
	} {
		r, _ := clamd.ParseReply(s)
		a := engine.Classify(r)
		fmt.Printf("%s %q heuristic=%v confidence=%.2f\n", a.Verdict, a.Metadata.MalwareFamily, a.Metadata.Heuristic, a.Confidence)
	}
	// Output:
	// malicious "Win.Trojan.Agent-1.UNOFFICIAL" heuristic=false confidence=0.95
	// malicious "Heuristics.Encrypted.Zip" heuristic=true confidence=0.70
	// benign "" heuristic=false confidence=0.15
}
