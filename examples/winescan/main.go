// Command winescan is the Wine example engine as a command-line program: its
// scanner is Wine's find.exe searching each artifact for the EICAR marker.
//
//	winescan analyze [-v] [--json] [-t file|url|bounty] ARTIFACT...
//	winescan commands [scan_file PATH | ver]
//
// It needs Wine (wine on PATH, or WINELOADER). The prefix is WINEPREFIX,
// else "wineprefix" under the engine's data directory; the first run creates
// it (10-30 s; -v or LOG_LEVEL=info shows it). See package engine.
package main

import (
	"github.com/polyswarm/psengine/cli"
	"github.com/polyswarm/psengine/examples/winescan/engine"
)

func main() {
	p := cli.Program{Name: "winescan", Scanner: engine.Scanner{}}
	p.Main()
}
