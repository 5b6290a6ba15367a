// Command eicar is the EICAR example engine with the NATS JetStream
// backend: the same program as examples/eicar, plus
//
//	eicar worker  --backend nats --nats-url URL [--workers N]
//	eicar analyze --backend nats --nats-url URL ARTIFACT...
//	eicar webhook --backend nats --nats-url URL
//
// and --nats-embedded DIR to run the NATS server in the process.
package main

import (
	"github.com/polyswarm/psengine/cli"
	"github.com/polyswarm/psengine/examples/eicar/engine"
	"github.com/polyswarm/psengine/natsq/natscli"
)

func main() {
	p := cli.Program{
		Name:     "eicar",
		Scanner:  engine.Scanner{},
		Backends: map[string]cli.Backend{"nats": natscli.Backend{}},
	}
	p.Main()
}
