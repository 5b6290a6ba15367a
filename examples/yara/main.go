// Command yara is the YARA example engine as a command-line program: it
// answers bounties by running the yara program with the operator's rules.
//
//	YARA_RULES=rules.yar yara analyze [-v] [--json] ARTIFACT...
//	yara commands info
//	yara commands scan_file PATH...
//
// YARA_RULES is a rules file or a directory of *.yar/*.yara files (default:
// DATA/rules under the engine's data directory); YARA_NO_MATCH=benign
// answers benign at a low bid when no rule matches (default: unknown).
// See package engine for the answers.
package main

import (
	"os"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/cli"
	"github.com/polyswarm/psengine/examples/yara/engine"
)

func main() {
	program(os.Getenv).Main()
}

// program is the command line with its settings read through getenv.
func program(getenv func(string) string) *cli.Program {
	return &cli.Program{
		Name: "yara",
		Scanner: engine.Scanner{
			Rules:   getenv("YARA_RULES"),
			NoMatch: psengine.Verdict(getenv("YARA_NO_MATCH")),
		},
		Getenv: getenv,
	}
}
