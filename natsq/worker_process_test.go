package natsq_test

import (
	"context"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/polyswarm/psengine/cli"
	"github.com/polyswarm/psengine/natsq/natscli"
)

// workerEnv, set in a child's environment, makes the test binary run the
// example CLI with a no-op scanner and the arguments it holds (split on
// spaces) instead of the tests: worker processes for the benchmarks.
const workerEnv = "NATSQ_TEST_WORKER"

func runWorkerProcess() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	p := cli.Program{Name: "noop", Scanner: noopScanner, Backends: map[string]cli.Backend{"nats": natscli.Backend{}}}
	return p.Run(ctx, strings.Fields(os.Getenv(workerEnv)))
}
