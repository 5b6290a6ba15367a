package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/cli/runrecord"
	"github.com/polyswarm/psengine/fetch"
	"github.com/polyswarm/psengine/pipeline"
)

// analyze answers each artifact and prints the results in argument order
// (the files under a directory argument in path order), with progress on a
// terminal and a summary of a batch.
func (p *Program) analyze(ctx context.Context, args []string) error {
	fs := newFlagSet("analyze")
	verbose := fs.Bool("v", false, "print each Bounty and Analysis as indented JSON")
	asJSON := fs.Bool("json", false, "print one JSON object per artifact per line")
	kind := fs.String("t", "file", "artifact kind: file, url or bounty")
	run := p.addRunFlags(fs, "local")
	workers := fs.Int("workers", p.defaultWorkers(4), "artifacts analyzed at once")
	inFlight := fs.Int("in-flight", DefaultInFlight, "with --backend NAME: bounties queued and not yet answered at once")
	summaryFile := fs.String("summary-json", "", "write the run's summary as JSON to `FILE`")
	recordFile := fs.String("record", "", "write the run's record to `FILE`: a JSON line per artifact as it is answered, then the summary (see report and diff)")
	noProgress := fs.Bool("no-progress", false, "no progress line, even on a terminal")
	noCache := addCacheFlag(fs) // cache.go
	conns := p.backendFlags(fs)
	args, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return usageError{"analyze needs at least one ARTIFACT"}
	}
	if err := run.check(p); err != nil {
		return err
	}
	var connect Connector
	if q := run.backend.queue; q != "local" {
		if run.backend.process {
			return usageError{"analyze --backend " + q + ",process: with a queue, the workers choose how scans run (worker --backend " + q + ",process)"}
		}
		connect = conns[q]
	}
	if *workers < 1 {
		return usageError{"--workers must be at least 1"}
	}
	if *inFlight < 1 {
		return usageError{"--in-flight must be at least 1"}
	}
	if *kind != "file" && *kind != "url" && *kind != "bounty" {
		return usageError{fmt.Sprintf("-t %q: want file, url or bounty", *kind)}
	}
	inputs := expandInputs(*kind, args)
	var rec *recorder
	if *recordFile != "" {
		h := runrecord.Header{Engine: p.Name, Started: time.Now().UTC(), Backend: run.backend.String(), Kind: *kind,
			Inputs: args, TimesIncludeQueue: connect != nil}
		if rec, err = createRecord(*recordFile, h); err != nil {
			return err
		}
		defer rec.close()
	}

	var pr *progress
	if len(inputs) > 1 && !*noProgress && isTerminal(p.Stderr) {
		pr = newProgress(p.Stderr, len(inputs))
		defer pr.finish()
	}
	stderr := pr.guard(p.Stderr)
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log, err := p.newLoggerOn(stderr, isTerminal(p.Stderr), level)
	if err != nil {
		return err
	}
	var results iter.Seq[analyzed]
	if connect != nil {
		sess, err := connect(ctx, log)
		if err != nil {
			return fmt.Errorf("analyze: %w", err)
		}
		defer sess.Close()
		ttl := psengine.DefaultLocalTTL
		if run.timeout > 0 {
			ttl = run.timeout + psengine.DefaultDeliveryMargin
		}
		results = p.remoteResults(ctx, sess, log, *kind, inputs, batchConfig{ttl: ttl, inFlight: *inFlight})
	} else {
		// Bounties given on the command line are the operator's own: they
		// may reference local files.
		opts := append([]psengine.Option{psengine.WithWorkers(*workers), psengine.WithFetchPolicy(fetch.Local())}, run.engineOptions()...)
		if run.timeout > 0 {
			opts = append(opts, psengine.WithLocalTTL(run.timeout+psengine.DefaultDeliveryMargin))
		}
		cacheOpts, closeCache := p.resultCache(log, *noCache) // cache.go
		defer closeCache()                                    // after the engine's shutdown
		opts = append(opts, cacheOpts...)
		engine := p.engine(log, opts...)
		defer shutdown(engine, log)
		// A setup failure (broken rules, no scanner) is one error, not one per artifact.
		if err := engine.Start(ctx); err != nil {
			return err
		}
		results = p.localResults(ctx, engine, log, *kind, *workers, inputs)
	}
	sum := newSummary(connect != nil)
	failed := 0
	var printErr error
	stdoutShared := pr != nil && isTerminal(p.Stdout)
	for o := range results {
		sum.add(o)
		rec.add(o)
		if !o.res.Answered {
			failed++
			fmt.Fprintf(stderr, "%s: %s: %s\n", p.Name, o.name, oneLine(o.res.Err))
		} else if printErr == nil {
			// A special answer's cause (res.Err) was logged by the engine.
			print := func() { printErr = p.printResult(o.name, o.res, *verbose, *asJSON) }
			if stdoutShared {
				pr.above(print)
			} else {
				print()
			}
		}
		pr.add()
	}
	pr.finish()
	recErr := rec.finish(sum.report())
	if printErr != nil {
		return printErr
	}
	if len(inputs) > 1 {
		if err := sum.write(p.Stderr); err != nil {
			return err
		}
	}
	if *summaryFile != "" {
		if err := writeSummaryFile(*summaryFile, sum); err != nil {
			return err
		}
	}
	if recErr != nil {
		return recErr
	}
	if failed > 0 {
		return errReported
	}
	return nil
}

// writeSummaryFile writes the summary as JSON to path.
func writeSummaryFile(path string, sum *summary) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--summary-json: %w", err)
	}
	err = writeJSON(f, sum.report())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("--summary-json: %w", err)
	}
	return nil
}

// localResults answers the inputs on engine, and yields their results in
// input order, each as soon as it and those before it are ready. The
// engine scans workers at a time; a window of 4x workers inputs in
// progress keeps them all busy while a long scan holds back the results
// after it. Unreadable bounty files, and the errors found walking a
// directory, fail alone.
func (p *Program) localResults(ctx context.Context, engine *psengine.Engine, log *slog.Logger, kind string, workers int, ins []input) iter.Seq[analyzed] {
	t := psengine.FileArtifact
	if kind == "url" {
		t = psengine.URLArtifact
	}
	stage := func(ctx context.Context, in input) (analyzed, error) {
		o := analyzed{name: in.name}
		if in.err != nil {
			o.res.Err = in.err
			return o, nil
		}
		start := time.Now()
		if kind == "bounty" {
			b, err := p.readBounty(log, in.name)
			if err != nil {
				o.res = psengine.Result{Bounty: b, Err: err}
				return o, nil
			}
			// analyze answers here, on stdout, as it does with --backend
			// NAME: the bounty's response_url is printed, not POSTed to
			// (a fixture's URL may lead nowhere, and delivery would retry
			// until the expiration).
			responseURL := b.ResponseURL
			b.ResponseURL = ""
			o.res, _ = engine.AnalyzeBounty(ctx, b)
			o.res.Bounty.ResponseURL = responseURL
		} else {
			o.res, _ = engine.AnalyzeArtifact(ctx, t, in.name)
		}
		o.took = max(time.Since(start), time.Nanosecond)
		return o, nil
	}
	return func(yield func(analyzed) bool) {
		i := 0
		for o, err := range pipeline.Stream(ctx, 4*workers, slices.Values(ins), stage) {
			if err != nil { // ctx ended before it started, or a panic outside the engine
				o = analyzed{name: ins[min(i, len(ins)-1)].name, res: psengine.Result{Err: err}}
			}
			i++
			if !yield(o) {
				return
			}
		}
	}
}

// readBounty reads the bounty in the file at path (- for stdin) and logs
// what its parsing ignored (Bounty.Warnings), once.
func (p *Program) readBounty(log *slog.Logger, path string) (psengine.Bounty, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(io.LimitReader(p.Stdin, 16<<20))
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return psengine.Bounty{}, err
	}
	b, err := psengine.ParseBounty(data)
	if err == nil {
		for _, w := range b.Warnings {
			log.Warn("bounty accepted as is", "file", path, "bounty", b.ID.String(), "warning", w)
		}
	}
	return b, err
}

// wireResult is the --json line.
type wireResult struct {
	Bounty   psengine.Bounty `json:"bounty"`
	Analysis psengine.Answer `json:"analysis"`
}

func (p *Program) printResult(name string, res psengine.Result, verbose, asJSON bool) error {
	switch {
	case asJSON:
		return json.NewEncoder(p.Stdout).Encode(wireResult{Bounty: res.Bounty, Analysis: res.Answer()})
	case verbose:
		b, err := json.MarshalIndent(res.Bounty, "", "  ")
		if err != nil {
			return err
		}
		a, err := json.MarshalIndent(res.Answer(), "", "  ")
		if err != nil {
			return err
		}
		rule := strings.Repeat("─", 8)
		_, err = fmt.Fprintf(p.Stdout, "%s %s %s\nBounty: %s\nAnalysis: %s\n", rule, name, rule, b, a)
		return err
	default:
		a := res.Analysis
		line := fmt.Sprintf("%s: %s", name, a.Verdict)
		if a.Metadata.MalwareFamily != "" {
			line += " " + a.Metadata.MalwareFamily
		}
		if a.Bid != 0 {
			line += fmt.Sprintf(" bid=%d", a.Bid)
		}
		if len(a.Metadata.Comments) > 0 {
			line += " " + strings.Join(a.Metadata.Comments, ",")
		}
		_, err := fmt.Fprintln(p.Stdout, line)
		return err
	}
}
