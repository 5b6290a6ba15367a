package engine

import (
	"context"
	"fmt"
	"slices"

	"github.com/polyswarm/psengine"
)

var (
	_ psengine.Updater       = Scanner{}
	_ psengine.SelfTester    = Scanner{}
	_ psengine.Releaser      = Scanner{}
	_ psengine.HealthChecker = Scanner{}
)

// Update recompiles the rules when any file they were compiled from
// changed (a top file or an included one), or a rule file was added to or
// removed from the directory: it returns an Env with the new rule set,
// whose Digest becomes the head's signatures_version. When nothing changed
// it returns psengine.ErrUnchanged (the engine keeps serving env, and
// counts no update). Rules that no longer compile are an error
// naming the file and line (*RulesError), and the engine keeps serving
// the last good rules.
func (s Scanner) Update(ctx context.Context, env psengine.Env) (psengine.Env, error) {
	cur, ok := CompiledOf(env)
	if !ok {
		return env, fmt.Errorf("%w: the env holds no compiled rules (run SetupEngine)", ErrConfig)
	}
	if !cur.changed() {
		return env, psengine.ErrUnchanged
	}
	return s.SetupEngine(ctx, env)
}

// changed reports whether the rules on disk differ from c's: another set
// of top files, or a file compiled whose content changed or cannot be read.
func (c *Compiled) changed() bool {
	files, err := ruleFiles(c.Rules)
	if err != nil || !slices.Equal(files, c.Files) {
		return true
	}
	for _, src := range c.Sources {
		if _, ok := src.readBack(); !ok {
			return true
		}
	}
	return false
}

// Release frees the rules of an Env the engine no longer uses (replaced
// by an update, or a candidate that failed its self-test). Each rule set
// is in one Env: an update that finds nothing new makes none.
func (Scanner) Release(_ context.Context, env psengine.Env) error {
	if c, ok := CompiledOf(env); ok {
		c.Close()
	}
	return nil
}

// SelfTest checks that a candidate's rules scan: it scans empty content
// with them.
func (Scanner) SelfTest(ctx context.Context, env psengine.Env) error {
	c, ok := CompiledOf(env)
	if !ok {
		return fmt.Errorf("%w: the env holds no compiled rules", ErrConfig)
	}
	if _, err := c.ScanArtifact(ctx, psengine.ArtifactFromBytes(nil)); err != nil {
		return fmt.Errorf("yara self-test: the rules of %s: %w", c.Rules, err)
	}
	return nil
}

// CheckHealth reports whether the rules are loaded.
func (Scanner) CheckHealth(_ context.Context, env psengine.Env) error {
	c, ok := CompiledOf(env)
	if !ok {
		return fmt.Errorf("%w: no compiled rules", ErrConfig)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.rules == nil {
		return fmt.Errorf("%w: the rules of %s were released", ErrRules, c.Rules)
	}
	return nil
}
