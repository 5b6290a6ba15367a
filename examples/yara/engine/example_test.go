package engine_test

import (
	"fmt"

	"github.com/polyswarm/psengine/examples/yara/engine"
)

// YARA_EXTERNALS: values typed by their form; quotes keep commas.
func ExampleParseExternals() {
	externals, err := engine.ParseExternals(`env=prod, max_size=0x100000, ratio=0.5, strict=true, label="a, \"b\""`)
	if err != nil {
		panic(err)
	}
	for _, x := range externals {
		fmt.Printf("%s %T %v\n", x.Name, x.Value, x.Value)
	}
	// Output:
	// env string prod
	// max_size int64 1048576
	// ratio float64 0.5
	// strict bool true
	// label string a, "b"
}

// The policy: the informational match (PECheck) never makes the verdict;
// the best other score does.
func ExamplePolicy_Classify() {
	p := engine.Policy{NoMatch: "unknown", InfoTags: []string{"pecheck"}}
	a := p.Classify([]engine.Match{
		{Rule: "IsPE32", Tags: []string{"PECheck"}, Score: engine.DefaultScore, Info: true},
		{Rule: "Packer_Generic", Score: 50},
		{Rule: "Trojan_X", Score: 85},
	})
	rep := a.Metadata.Extra["yara"].(engine.Report)
	fmt.Println(a.Verdict, a.Metadata.MalwareFamily, a.Score, rep.Count, rep.Rules[0].Rule, rep.Rules[2].Rule)
	// Output:
	// malicious Trojan_X 85 3 Trojan_X IsPE32
}
