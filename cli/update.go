package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/polyswarm/psengine"
)

// update starts the engine, updates its definitions once (Engine.Update)
// and prints the engine's head afterwards (product, vendor_version,
// signatures_version...) as indented JSON (with "definitions unchanged" on
// stderr when the Updater found nothing new). A failure is one line on
// stderr and exit status 1: the definitions were not replaced. With
// --selftest-dir, new definitions must pass the corpus to replace the
// ones in use, and definitions found unchanged must pass it for the
// command to succeed. Its logs are off unless LOG_LEVEL asks for them, so
// that the error line is the whole report.
func (p *Program) update(ctx context.Context, args []string) error {
	fs := newFlagSet("update")
	selftestDir := addSelfTestFlag(fs) // cache.go
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError{fmt.Sprintf("update takes no arguments, got %q", rest)}
	}
	if _, ok := p.Scanner.(psengine.Updater); !ok {
		return fmt.Errorf("update: %s has no definitions to update (its scanner is not a psengine.Updater)", p.Name)
	}
	gate, err := selfTest(*selftestDir) // cache.go
	if err != nil {
		return err
	}
	log, err := p.newLogger(slog.LevelError + 4)
	if err != nil {
		return err
	}
	engine := p.engine(log, gate...)
	defer shutdown(engine, log)
	if err := engine.Start(ctx); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	if err := engine.Update(ctx); errors.Is(err, psengine.ErrUnchanged) {
		fmt.Fprintf(p.Stderr, "%s: definitions unchanged\n", p.Name)
		// Nothing new to check: check what is in use (cache.go).
		if err := engine.SelfTest(ctx); err != nil {
			return fmt.Errorf("update: the definitions in use fail the self-test: %w", err)
		}
	} else if err != nil {
		return err // "psengine: update: ..."
	}
	b, err := json.MarshalIndent(engine.Env().Head(), "", "  ")
	if err != nil {
		return fmt.Errorf("update: the head is not JSON: %w", err)
	}
	_, err = fmt.Fprintf(p.Stdout, "%s\n", b)
	return err
}
