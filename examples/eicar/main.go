// Command eicar is the EICAR example engine as a command-line program:
//
//	eicar analyze [-v] [--json] [-t file|url|bounty] ARTIFACT...
//	eicar commands [NAME ARG...]
//
// See package engine for what it detects and how it bids.
package main

import (
	"github.com/polyswarm/psengine/cli"
	"github.com/polyswarm/psengine/examples/eicar/engine"
)

func main() {
	p := cli.Program{Name: "eicar", Scanner: engine.Scanner{}}
	p.Main()
}
