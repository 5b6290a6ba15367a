//go:build cgo && !nolibyara

package libyara_test

import (
	"fmt"

	"github.com/polyswarm/psengine/examples/yara/libyara"
)

// Compile rules with an external variable, then scan with a scanner that
// sets it per scan.
func Example() {
	c, err := libyara.NewCompiler()
	if err != nil {
		panic(err)
	}
	defer c.Close()
	if err := c.Define("extension", ""); err != nil {
		panic(err)
	}
	if err := c.AddString(`rule Marker : demo { meta: score = 80 strings: $m = "MARKER" condition: $m and extension == ".txt" }`, ""); err != nil {
		panic(err)
	}
	rules, err := c.Rules()
	if err != nil {
		panic(err)
	}
	defer rules.Close()
	s, err := rules.NewScanner()
	if err != nil {
		panic(err)
	}
	defer s.Close()
	if err := s.Define("extension", ".txt"); err != nil {
		panic(err)
	}
	matches, err := s.ScanMem([]byte("a MARKER here"))
	if err != nil {
		panic(err)
	}
	for _, r := range matches {
		fmt.Println(r.Identifier, r.Tags, r.Metas)
	}
	// Output:
	// Marker [demo] [{score 80}]
}
