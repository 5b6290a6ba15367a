package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/resultcache"
	"github.com/polyswarm/psengine/selftest"
)

// The result cache (analyze, webhook, worker) and the self-test corpus
// that gates definition updates (webhook, worker, update).

// addCacheFlag registers --no-cache on fs.
func addCacheFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("no-cache", false, "scan every artifact: neither answer from nor add to the result cache (STATE/"+resultcache.DefaultFile+")")
}

// resultCache opens the engine's result cache, STATE/results.db, unless
// off, and returns the engine option that uses it and the function that
// closes it (after the engine's shutdown). A cache that cannot be opened
// (another process of this engine has it, a directory that cannot be
// made) is a warning: the command scans every artifact.
func (p *Program) resultCache(log *slog.Logger, off bool) ([]psengine.Option, func()) {
	if off {
		return nil, func() {}
	}
	dirs, _, err := envdirs.Resolve(p.Name, p.Getenv)
	if err != nil {
		log.Warn("no result cache: the engine's state directory", "err", err)
		return nil, func() {}
	}
	path := filepath.Join(dirs.State, resultcache.DefaultFile)
	c, err := resultcache.Open(path, resultcache.Config{Logger: log})
	if err != nil {
		if errors.Is(err, resultcache.ErrLocked) {
			log.Warn("no result cache: another process of this engine has it open; every artifact is scanned", "cache", path)
		} else {
			log.Warn("no result cache: every artifact is scanned", "err", err)
		}
		return nil, func() {}
	}
	log.Debug("result cache opened", "cache", path, "records", c.Stats().Records)
	return []psengine.Option{psengine.WithResultCache(c)}, func() {
		if err := c.Close(); err != nil {
			log.Warn("closing the result cache", "err", err)
		}
	}
}

// addSelfTestFlag registers --selftest-dir on fs.
func addSelfTestFlag(fs *flag.FlagSet) *string {
	return fs.String("selftest-dir", "", "refuse new definitions that lose a detection or add one on a benign file of the corpus in `DIR` (DIR/"+selftest.ManifestFile+" lists the files and their expected verdicts)")
}

// selfTest loads the corpus of --selftest-dir and returns the engine
// option that gates updates on it (none without the flag). A manifest that
// cannot be used stops the command before it starts.
func selfTest(dir string) ([]psengine.Option, error) {
	if dir == "" {
		return nil, nil
	}
	c, err := selftest.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("--selftest-dir: %w", err)
	}
	return []psengine.Option{psengine.WithSelfTest(c.Test)}, nil
}

// checkServing runs the self-test corpus on the definitions serving at
// start: a failure is a warning (they serve, and every update is refused
// until new definitions pass).
func checkServing(ctx context.Context, log *slog.Logger, e *psengine.Engine) {
	if err := e.SelfTest(ctx); err != nil && ctx.Err() == nil {
		log.Warn("the definitions in use fail the self-test corpus: updates are refused until new definitions pass it", "err", err)
	}
}
