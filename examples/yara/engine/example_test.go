package engine_test

import (
	"fmt"

	"github.com/polyswarm/psengine/examples/yara/engine"
)

// What `yara -g -m RULES FILE` prints, parsed: one record per matching rule.
func ExampleParseOutput() {
	out := `Dropper [trojan,win] [author="team \"A\"",score =80,packed=true] /samples/x.exe` + "\n" +
		`Generic_Packer [] [] /samples/x.exe` + "\n"
	matches, err := engine.ParseOutput([]byte(out), "/samples/x.exe")
	if err != nil {
		panic(err)
	}
	for _, m := range matches {
		fmt.Println(m.Rule, m.Tags, m.Meta)
	}
	// Output:
	// Dropper [trojan win] map[author:team "A" packed:true score:80]
	// Generic_Packer [] map[]
}
