// Command yara is the YARA example engine as a command-line program: it
// answers bounties by scanning with libyara in process, with the
// operator's rules compiled once.
//
//	YARA_RULES=rules.yar yara analyze [-v] [--json] ARTIFACT|DIR...
//	yara commands info
//	yara commands scan_file PATH...
//	yara update
//
// Settings:
//
//	YARA_RULES       a rules file or a directory of *.yar/*.yara files
//	                 (default: DATA/rules under the engine's data directory)
//	YARA_NO_MATCH    benign: answer benign at a low bid without a detection
//	                 (default: unknown)
//	YARA_EXTERNALS   external variables: name=value, separated by commas or
//	                 newlines (true/false, integers, floats, "quoted strings",
//	                 else bare strings); filename, filepath, extension,
//	                 filetype and owner are set per scan from the artifact
//	YARA_INFO_TAGS   comma-separated tags and rule names of informational
//	                 rules (default: info,informational,PECheck)
//
// It needs libyara (apt-get install libyara-dev). See package engine for
// the answers.
package main

import (
	"os"
	"strings"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/cli"
	"github.com/polyswarm/psengine/examples/yara/engine"
)

func main() {
	program(os.Getenv).Main()
}

// program is the command line with its settings read through getenv.
func program(getenv func(string) string) *cli.Program {
	var infoTags []string
	if v := strings.TrimSpace(getenv("YARA_INFO_TAGS")); v != "" {
		infoTags = strings.Split(v, ",")
	}
	return &cli.Program{
		Name: "yara",
		Scanner: engine.Scanner{
			Rules:     getenv("YARA_RULES"),
			NoMatch:   psengine.Verdict(getenv("YARA_NO_MATCH")),
			Externals: getenv("YARA_EXTERNALS"),
			InfoTags:  infoTags,
		},
		Getenv: getenv,
	}
}
