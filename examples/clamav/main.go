// Command clamav is the ClamAV example engine as a command-line program: it
// answers bounties with a clamd daemon, reached at CLAMD_ADDRESS
// (unix:/path/clamd.sock or tcp:host:port; default
// unix:/var/run/clamav/clamd.ctl, Debian's).
//
//	CLAMD_ADDRESS=unix:/run/clamd.sock clamav analyze [-v] [--json] ARTIFACT...
//	clamav commands info
//	clamav commands scan_file PATH...
//	clamav update     (clamd reloads its databases; prints the new head)
//
// CLAMD_DATABASE_DIR names clamd's DatabaseDirectory when this program can
// read it (Debian's: /var/lib/clamav): updates then reload clamd only when
// its files changed, fail on a database ClamAV cannot load, naming the
// file, and wait for the new version only as long as the reload takes.
//
// See package engine for the answers and package clamd for the protocol.
package main

import (
	"os"

	"github.com/polyswarm/psengine/cli"
	"github.com/polyswarm/psengine/examples/clamav/engine"
)

func main() {
	program(os.Getenv).Main()
}

// program is the command line with its settings read through getenv.
func program(getenv func(string) string) *cli.Program {
	return &cli.Program{
		Name:    "clamav",
		Scanner: engine.Scanner{Address: getenv("CLAMD_ADDRESS"), DatabaseDir: getenv("CLAMD_DATABASE_DIR")},
		Getenv:  getenv,
		// clamd scans in its own threads: each worker mostly waits for it,
		// and 8 keep it busier than 4 (the wall-time benchmark against
		// clamdscan --stream is met with 8, not reliably with 4).
		DefaultWorkers: 8,
	}
}
