package natsq_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/cli"
	"github.com/polyswarm/psengine/natsq"
	"github.com/polyswarm/psengine/natsq/natscli"
)

// workerEnv, set in a child's environment, makes the test binary run the
// example CLI with the arguments it holds (split on spaces) instead of the
// tests: worker processes for the benchmarks and the tests. The scanner is
// a no-op one, unless deathDirEnv names a directory: then it is
// killerScanner, and each delivery is written down there (see
// recordingBackend).
const (
	workerEnv   = "NATSQ_TEST_WORKER"
	deathDirEnv = "NATSQ_TEST_DEATH_DIR"
)

func runWorkerProcess() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	p := cli.Program{Name: "noop", Scanner: noopScanner, Backends: map[string]cli.Backend{"nats": natscli.Backend{}}}
	if dir := os.Getenv(deathDirEnv); dir != "" {
		p.Scanner = killerScanner(dir)
		p.Backends["nats"] = recordingBackend{dir: dir}
	}
	return p.Run(ctx, strings.Fields(os.Getenv(workerEnv)))
}

// killerScanner scans artifacts whose content is a name: it writes
// "NAME PID" to dir/scans, then waits for a gate file (dir/hold, or
// dir/poison-gate for "poison"); the poison then kills its process with
// SIGKILL, the others are benign.
func killerScanner(dir string) psengine.Scanner {
	return psengine.ScannerFunc(func(ctx context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
		data, err := a.Bytes()
		if err != nil {
			return psengine.Analysis{}, err
		}
		name := string(data)
		appendLine(filepath.Join(dir, "scans"), fmt.Sprintf("%s %d", name, os.Getpid()))
		gate := filepath.Join(dir, "hold")
		if name == "poison" {
			gate = filepath.Join(dir, "poison-gate")
		}
		for {
			if _, err := os.Stat(gate); err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return psengine.Analysis{}, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
		if name == "poison" {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return psengine.Analysis{Verdict: psengine.Benign}, nil
	})
}

// appendLine appends line to the file at path. One write, O_APPEND: the
// lines of several processes do not mix, and a line written survives its
// process's SIGKILL.
func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		panic(err)
	}
}

// recordingBackend is the nats backend whose broker writes down each job
// it hands the engine ("ID ATTEMPT SUSPECT FINAL" in dir/deliveries).
type recordingBackend struct{ dir string }

func (r recordingBackend) Flags(fs *flag.FlagSet) cli.Connector {
	connect := natscli.Backend{}.Flags(fs)
	return func(ctx context.Context, log *slog.Logger) (cli.Session, error) {
		s, err := connect(ctx, log)
		if err != nil {
			return nil, err
		}
		return recordingSession{Session: s, broker: &recordingBroker{Broker: s.Broker().(*natsq.Broker), dir: r.dir}}, nil
	}
}

type recordingSession struct {
	cli.Session
	broker *recordingBroker
}

func (s recordingSession) Broker() broker.Broker { return s.broker }

// recordingBroker is a natsq.Broker (an AnswerKeeper and a ScanMarker
// too: the methods are promoted) whose handler writes each job down first.
type recordingBroker struct {
	*natsq.Broker
	dir string
}

func (r *recordingBroker) Consume(ctx context.Context, h broker.Handler) error {
	return r.Broker.Consume(ctx, func(ctx context.Context, j broker.Job) error {
		appendLine(filepath.Join(r.dir, "deliveries"), fmt.Sprintf("%s %d %t %t", j.ID, j.Attempt, j.Suspect, j.Final != ""))
		return h(ctx, j)
	})
}
