package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/fetch"
)

// analyze answers each artifact and prints the results in argument order.
func (p *Program) analyze(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("analyze", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	verbose := fs.Bool("v", false, "print each Bounty and Analysis as indented JSON")
	asJSON := fs.Bool("json", false, "print one JSON object per artifact per line")
	kind := fs.String("t", "file", "artifact kind: file, url or bounty")
	run := p.addRunFlags(fs, "local")
	workers := fs.Int("workers", p.defaultWorkers(4), "artifacts analyzed at once")
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
		if connect, err = p.connector(q, conns); err != nil {
			return err
		}
	}
	if *workers < 1 {
		return usageError{"--workers must be at least 1"}
	}
	if *kind != "file" && *kind != "url" && *kind != "bounty" {
		return usageError{fmt.Sprintf("-t %q: want file, url or bounty", *kind)}
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log, err := p.newLogger(level)
	if err != nil {
		return err
	}
	var results iter.Seq[psengine.Result]
	if connect != nil {
		sess, err := connect(ctx, log)
		if err != nil {
			return fmt.Errorf("analyze: %w", err)
		}
		defer sess.Close()
		results = p.remoteResults(ctx, sess, *kind, args)
	} else {
		// Bounties given on the command line are the operator's own: they
		// may reference local files.
		opts := append([]psengine.Option{psengine.WithWorkers(*workers), psengine.WithFetchPolicy(fetch.Local())}, run.engineOptions()...)
		if run.timeout > 0 {
			opts = append(opts, psengine.WithLocalTTL(run.timeout+psengine.DefaultDeliveryMargin))
		}
		engine := p.engine(log, opts...)
		defer shutdown(engine, log)
		// A setup failure (broken rules, no scanner) is one error, not one per artifact.
		if err := engine.Start(ctx); err != nil {
			return err
		}
		results = p.results(ctx, engine, *kind, args)
	}
	failed := 0
	i := 0
	for res := range results {
		name := args[i]
		i++
		if !res.Answered {
			failed++
			fmt.Fprintf(p.Stderr, "%s: %s: %s\n", p.Name, name, oneLine(res.Err))
			continue
		}
		// A special answer's cause (res.Err) was logged by the engine.
		if err := p.printResult(name, res, *verbose, *asJSON); err != nil {
			return err
		}
	}
	if failed > 0 {
		return errReported
	}
	return nil
}

// results answers the arguments in order, as they complete.
func (p *Program) results(ctx context.Context, engine *psengine.Engine, kind string, args []string) iter.Seq[psengine.Result] {
	switch kind {
	case "bounty":
		return func(yield func(psengine.Result) bool) {
			// Unreadable bounty files fail alone; the others are answered.
			bounties := make([]psengine.Bounty, len(args))
			errs := make([]error, len(args))
			for i, path := range args {
				bounties[i], errs[i] = p.readBounty(path)
			}
			seq := func(yield func(psengine.Bounty) bool) {
				for i := range bounties {
					if errs[i] == nil && !yield(bounties[i]) {
						return
					}
				}
			}
			next, stop := iter.Pull(engine.AnalyzeBounties(ctx, seq))
			defer stop()
			for i := range args {
				res := psengine.Result{Bounty: bounties[i], Err: errs[i]}
				if errs[i] == nil {
					res, _ = next()
				}
				if !yield(res) {
					return
				}
			}
		}
	default:
		t := psengine.FileArtifact
		if kind == "url" {
			t = psengine.URLArtifact
		}
		return engine.AnalyzeEach(ctx, t, slices.Values(args))
	}
}

func (p *Program) readBounty(path string) (psengine.Bounty, error) {
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
	return psengine.ParseBounty(data)
}

// wireResult is the --json line.
type wireResult struct {
	Bounty   psengine.Bounty `json:"bounty"`
	Analysis psengine.Answer `json:"analysis"`
}

func (p *Program) printResult(name string, res psengine.Result, verbose, asJSON bool) error {
	switch {
	case asJSON:
		line, err := json.Marshal(wireResult{Bounty: res.Bounty, Analysis: res.Answer()})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(p.Stdout, "%s\n", line)
		return err
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
