package natsq_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/polyswarm/psengine"
	eicar "github.com/polyswarm/psengine/examples/eicar/engine"
	"github.com/polyswarm/psengine/natsq"
	"github.com/polyswarm/psengine/natsq/embedded"
	"github.com/polyswarm/psengine/pipeline"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) != "" {
		os.Exit(runWorkerProcess())
	}
	goleak.VerifyTestMain(m, ignoreNATSClientLeak)
}

// ignoreNATSClientLeak: nats.go v1.55.0 starts a goroutine for async
// publishes (object store puts) that reads its status channel only once it
// runs; when the connection closes first, the channel is already reset to
// nil and the goroutine blocks forever. It is the client library's, holds
// nothing of ours, and is not started again for the connection.
var ignoreNATSClientLeak = goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect")

// startServer runs an in-process server with a file store in a temp dir.
func startServer(t testing.TB, dir string) *embedded.Server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	srv, err := embedded.Start(embedded.Options{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func connect(t testing.TB, srv *embedded.Server) *nats.Conn {
	t.Helper()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

var prefixes atomic.Int64

// fastConfig is a Config with short timings for tests.
func fastConfig() natsq.Config {
	return natsq.Config{
		AckWait:     2 * time.Second,
		MaxAttempts: 3,
		Backoff:     pipeline.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond},
	}
}

// newBroker makes a provisioned broker with a prefix of its own (so it is
// a fresh, empty queue) unless cfg names one.
func newBroker(t testing.TB, nc *nats.Conn, cfg natsq.Config) *natsq.Broker {
	t.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = fmt.Sprintf("t%d", prefixes.Add(1))
	}
	b, err := natsq.New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// waitFor polls cond until it holds, failing after a generous bound (it
// only stops a broken test from hanging).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// natsqBenchConfig is the benchmarks' broker config: the defaults.
func natsqBenchConfig() natsq.Config { return natsq.Config{} }

// engineScanner is the EICAR example engine.
func engineScanner() psengine.Scanner { return eicar.Scanner{} }

// waitForPoll is waitFor with a chosen polling interval.
func waitForPoll(t testing.TB, what string, every time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(every)
	}
}
