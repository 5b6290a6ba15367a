// Package cli is the host program an engine is built into: it turns a
// psengine.Scanner into a command-line tool with the subcommands of the
// PolySwarm engine CLI:
//
//	ENGINE analyze [-v] [--json] [-t file|url|bounty] [--backend local|NAME] [--summary-json FILE] [--record FILE] ARTIFACT|DIR...
//	ENGINE report [-o FILE] RECORD
//	ENGINE diff [--confidence-delta D] [--json] [-o FILE] OLD NEW
//	ENGINE commands [NAME ARG...]
//	ENGINE worker --backend NAME [--workers N] [backend flags]
//	ENGINE webhook [-p PORT] [--addr HOST] [--backend local] [--secret-file FILE]
//	ENGINE update
//
// webhook and worker also take --metrics-addr (Prometheus /metrics,
// /healthz, /readyz), --otlp-endpoint (traces over OTLP/HTTP) and
// --update-interval (periodic definition updates).
//
// The engine library (package psengine) has no CLI and does not import this
// package; the example engines and natsq's CLI build on it, and an engine
// of your own may too (or embed psengine in a host of its own). Logs go to stderr, shaped by
// LOG_LEVEL (debug, info, warn, error) and LOG_FORMAT (text, json); text
// logs on a terminal are coloured with tint.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lmittmann/tint"
	"github.com/polyswarm/psengine"
)

// Program is one engine's command-line host.
type Program struct {
	Name    string           // the engine's name, as in `NAME analyze ...`
	Scanner psengine.Scanner // the engine
	Options []psengine.Option
	// DefaultWorkers is the default of --workers: how many bounties are
	// scanned at once. Zero means 4 for analyze and webhook, and one per
	// CPU for worker. An engine whose scans wait on another process (a
	// daemon, a network service) keeps a CPU busy with fewer and benefits
	// from more.
	DefaultWorkers int
	// Backends are the distributed queues --backend may name (see Backend),
	// by name; "local" is the in-process default and needs no entry.
	Backends map[string]Backend

	// The process's streams and environment; nil means the real ones.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
}

// Main runs the program on os.Args and exits with its status. SIGINT and
// SIGTERM cancel the run (the engine shuts down gracefully); a second one
// ends the process at once, with status 128+signal (a scan that ignores its
// ctx cannot hold it).
func (p *Program) Main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	if !psengine.IsWorkerChild() { // a worker child ends when its parent says
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		go watchSignals(sigs, cancel, os.Exit)
	}
	code := p.Run(ctx, os.Args[1:])
	signal.Stop(sigs)
	os.Exit(code)
}

// watchSignals cancels the run on the first signal from sigs and calls exit
// on the second, with the status a shell gives a process killed by it.
func watchSignals(sigs <-chan os.Signal, cancel func(), exit func(int)) {
	if _, ok := <-sigs; !ok {
		return
	}
	cancel()
	sig, ok := <-sigs
	if !ok {
		return
	}
	code := 1
	if n, isNum := sig.(syscall.Signal); isNum {
		code = 128 + int(n)
	}
	exit(code)
}

func (p *Program) defaults() {
	if p.Stdin == nil {
		p.Stdin = os.Stdin
	}
	if p.Stdout == nil {
		p.Stdout = os.Stdout
	}
	if p.Stderr == nil {
		p.Stderr = os.Stderr
	}
	if p.Getenv == nil {
		p.Getenv = os.Getenv
	}
}

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// Run runs one command line (without the program name) and returns the exit
// status: 0 on success, 1 when some work failed, 2 for a usage error.
// Errors are printed to Stderr as one line each, never as a Go panic trace.
func (p *Program) Run(ctx context.Context, args []string) int {
	p.defaults()
	if psengine.IsWorkerChild() {
		// A worker child of this program's process backend: the engine
		// serves its parent and exits (see psengine.WithProcessWorkers).
		log, err := p.newLogger(slog.LevelInfo)
		if err != nil {
			log = slog.New(slog.NewTextHandler(p.Stderr, nil))
		}
		p.engine(log)
		fmt.Fprintf(p.Stderr, "%s: started as a worker child of another engine\n", p.Name)
		return 3
	}
	if len(args) == 0 {
		p.usage()
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "analyze":
		err = p.analyze(ctx, rest)
	case "commands":
		err = p.commands(ctx, rest)
	case "webhook":
		err = p.webhook(ctx, rest)
	case "worker":
		err = p.worker(ctx, rest)
	case "update":
		err = p.update(ctx, rest)
	case "deadletters":
		err = p.deadletters(ctx, rest)
	case "report":
		err = p.report(rest)
	case "diff":
		err = p.diff(rest)
	case "-h", "-help", "--help", "help":
		p.usage()
		return 0
	default:
		err = usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(p.Stderr, "%s: %s\n", p.Name, ue.msg)
		fmt.Fprintf(p.Stderr, "Run '%s help' for usage.\n", p.Name)
		return 2
	case errors.Is(err, errReported):
		return 1
	default:
		fmt.Fprintf(p.Stderr, "%s: %s\n", p.Name, oneLine(err))
		return 1
	}
}

// errReported: the failures were already printed.
var errReported = errors.New("failures reported")

func (p *Program) usage() {
	fmt.Fprintf(p.Stderr, `Usage:
  %[1]s analyze [-v] [--json] [-t file|url|bounty] [--backend local|process|NAME] [--workers N]
          [--timeout DURATION] [--max-tasks-per-child N] [--max-child-memory SIZE]
          [--sandbox on|off] [--sandbox-user USER]
          [--in-flight N] [--summary-json FILE] [--record FILE] [--no-progress] [--no-cache] ARTIFACT|DIR...
      Answer each ARTIFACT (a path, - for stdin, or a file://, data: or
      http(s):// URI; with -t bounty, a bounty JSON file) and print the result.
      A bounty's response_url is printed, not POSTed to (webhook answers).
      A directory stands for the files under it, walked recursively in path
      order; symbolic links are not followed out of it. Results are printed
      in that order. On a terminal, stderr shows the progress (done/total,
      rate, ETA); a batch of more than one artifact ends with a summary on
      stderr (verdicts, errors by kind, bids, scan times), which
      --summary-json also writes as JSON. --record writes the run's record
      (JSON Lines): a header, a line per artifact as it is answered (path,
      sha256, verdict, confidence, family, seconds, error kind and message),
      the summary last; an interrupted run leaves a partial record.
      --backend process scans in child processes (this program, re-executed),
      recycled after N scans or past SIZE of memory; a crash costs only the
      artifact it held. Each child is sandboxed unless --sandbox off: an
      allow-listed environment, no capabilities, no_new_privs, Landlock
      (read the system and the engine's data, write its own temp directory,
      no TCP but what the scanner declares), seccomp, resource limits; as
      root, --sandbox-user runs the children as that user. With --backend NAME the bounties go to that queue and
      workers anywhere answer them: at most --in-flight (default 64) queued
      at once, each forged with its own expiration (--timeout, or 5m, from
      when a worker should reach it); a full queue is waited for.
      A file analyzed before, by the same definitions and the same build of
      this program, is answered from the result cache (STATE/results.db)
      without a scan; --no-cache scans every artifact.
  %[1]s report [-o FILE] RECORD
      Render a run's record (analyze --record) as one self-contained HTML
      page (default: on stdout): verdicts, confidence, scan times and the
      slowest artifacts, errors by kind with examples, malware families.
  %[1]s diff [--confidence-delta D] [--json] [-o FILE] OLD NEW
      List the artifacts whose answer changed from the run recorded in OLD
      to the one in NEW: lost and new detections (malicious), other verdict
      changes, family changes, confidence changes of D or more (default
      0.2). Artifacts are matched by path, then by sha256 (moved files);
      those in one run alone are listed apart. --json prints one document;
      -o also writes an HTML page. Exit status 1 when detections were lost.
  %[1]s commands [NAME ARG...]
      List the engine's commands, or run one and print its result as JSON.
  %[1]s webhook [-p PORT] [--addr HOST] [--backend local|process|NAME] [--secret-file FILE]
          [--insecure] [--allow-file] [--allow-private] [--workers N] [--in-flight N]
          [--delivery-window DURATION] [--max-body BYTES] [--reads-per-source N] [--drain DURATION]
          [--timeout DURATION] [--max-tasks-per-child N] [--max-child-memory SIZE]
          [--sandbox on|off] [--sandbox-user USER] [--metrics-addr [HOST]:PORT] [--otlp-endpoint URL]
          [--update-interval DURATION] [--selftest-dir DIR] [--no-cache]
      Serve PolySwarm's webhook on HOST:PORT (default 127.0.0.1:5000, loopback
      only: --addr 0.0.0.0 or :: for every interface; -p 0 picks a free port)
      and print "listening on http://ADDR". Signed bounties are answered 202
      and scanned; answers are POSTed to their response_url. The secret comes
      from --secret-file (a file of yours, mode 0600 or 0400, as ssh wants of
      a key), PSENGINE_WEBHOOK_SECRET, or --secret (which every user sees in
      ps: a warning says so); without one the server refuses to start unless
      --insecure. Before a request is authenticated, one address sends at
      most --reads-per-source bodies at once (default 8; behind a reverse
      proxy every request shares its address), each at 16 KiB/s at least
      after 2 s and within 10 s, at most --max-body bytes (default 256 KiB).
      With --backend local or process, the engine's runtime directory is
      created (0700) when missing, and a runtime or secrets directory (or a
      secret in it) that other users can write, or read, stops the webhook
      with the path and the fix (chmod 700 PATH). Artifacts and response URLs
      on loopback, private and link-local addresses are refused unless
      --allow-private. SIGINT or SIGTERM stop intake and drain the queue.
  %[1]s worker --backend NAME[,process] [--workers N] [--in-flight N] [--delivery-window DURATION]
          [--grace DURATION] [--timeout DURATION] [--max-tasks-per-child N] [--max-child-memory SIZE]
          [--sandbox on|off] [--sandbox-user USER] [backend flags]
          [--metrics-addr [HOST]:PORT] [--otlp-endpoint URL] [--update-interval DURATION]
          [--selftest-dir DIR] [--no-cache]
      Answer the bounties queued on the backend (by analyze or webhook on any
      machine) until SIGINT or SIGTERM, then let running scans finish. Its
      directories are checked at start as webhook's are.
  %[1]s deadletters [list|requeue ID...|drop ID...] [--json] [--backend local|NAME]
      List the bounties the queue gave up on (each was answered unknown
      where its expiration allowed), deliver some again as new (requeue), or
      forget them (drop). With --backend local (the default) this is the
      webhook's intake store: stop the webhook first.
  %[1]s update [--selftest-dir DIR]
      Update the engine's definitions once and print its head (versions,
      signatures_version) as JSON; on failure, say why and exit 1 (the
      definitions in use are not replaced).

webhook and worker: --metrics-addr serves /metrics (Prometheus), /healthz
(200 while the process runs) and /readyz (200 when the engine can answer,
else 503 and why) on HOST:PORT, unauthenticated: :PORT alone means
127.0.0.1:PORT (0.0.0.0:PORT for every interface). It prints "metrics on
http://ADDR" first.
--otlp-endpoint exports traces over OTLP/HTTP to a collector (URL/v1/traces;
or set OTEL_EXPORTER_OTLP_ENDPOINT); logs then carry trace_id and span_id.
--update-interval updates the definitions that often: a failed update keeps
the last good definitions serving.
--selftest-dir (webhook, worker, update) gates each update on a corpus: DIR/manifest.txt
lists files with their expected verdict, one per line (PATH malicious|any-detection|benign
[FAMILY]); new definitions that lose an expected detection, add a detection on a
benign file, or fail to scan one are refused, naming the files, and the last good
definitions keep serving.
webhook and worker answer a file scanned before by the same definitions from the
result cache (STATE/results.db; at most 64 MiB, oldest dropped first; emptied when
the definitions change), unless --no-cache.

--timeout is the scan deadline of the artifacts analyze forges, and the
window of bounties without a usable expiration (default 5m).

Environment: LOG_LEVEL (debug|info|warn|error), LOG_FORMAT (text|json),
PSENGINE_WEBHOOK_SECRET (or WEBHOOK_SECRET), PSENGINE_HOME and PSENGINE_*_DIR, PSENGINE_METADATA_OS, PSENGINE_METADATA_ARCHITECTURE, TMPDIR, TMPPREFIX.
`, p.Name)
	p.backendUsage(p.Stderr)
}

// oneLine flattens an error message to one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// writeJSON writes v to w as indented JSON, and a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newFlagSet is the flag set of the subcommand name. It prints nothing:
// parseInterleaved returns its errors, as usage errors.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseInterleaved parses flags that may stand before, between or after
// the positional arguments (`analyze FILE --json` works).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		if args[0] == "--" {
			return append(positional, args[1:]...), nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// newLogger builds the logger: LOG_LEVEL, LOG_FORMAT, tint on a terminal.
func (p *Program) newLogger(defaultLevel slog.Level) (*slog.Logger, error) {
	return p.newLoggerOn(p.Stderr, isTerminal(p.Stderr), defaultLevel)
}

// newLoggerOn builds the logger writing to w, coloured when w is a
// terminal (tty).
func (p *Program) newLoggerOn(w io.Writer, tty bool, defaultLevel slog.Level) (*slog.Logger, error) {
	level := defaultLevel
	if v := p.Getenv("LOG_LEVEL"); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			return nil, usageError{fmt.Sprintf("LOG_LEVEL=%q: want debug, info, warn or error", v)}
		}
	}
	switch format := strings.ToLower(p.Getenv("LOG_FORMAT")); format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})), nil
	case "", "text":
		if tty {
			return slog.New(tint.NewTextHandler(w, &tint.Options{Level: level, TimeFormat: time.Kitchen})), nil
		}
		return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), nil
	default:
		return nil, usageError{fmt.Sprintf("LOG_FORMAT=%q: want text or json", format)}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// engine makes the engine with the program's options plus extra ones.
func (p *Program) engine(log *slog.Logger, extra ...psengine.Option) *psengine.Engine {
	opts := []psengine.Option{psengine.WithName(p.Name), psengine.WithLogger(log), psengine.WithGetenv(p.Getenv)}
	opts = append(opts, p.Options...)
	opts = append(opts, extra...)
	return psengine.New(p.Scanner, opts...)
}

// shutdown stops the engine, giving running work a moment.
func shutdown(e *psengine.Engine, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		log.Error("shutdown", "err", err)
	}
}

// defaultWorkers is p's default for --workers, or fallback.
func (p *Program) defaultWorkers(fallback int) int {
	if p.DefaultWorkers > 0 {
		return p.DefaultWorkers
	}
	return fallback
}
