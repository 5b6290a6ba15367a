package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/polyswarm/psengine"
)

var (
	_ psengine.Updater       = Scanner{}
	_ psengine.SelfTester    = Scanner{}
	_ psengine.Releaser      = Scanner{}
	_ psengine.HealthChecker = Scanner{}
)

// compiledMagic starts every file yarac writes.
var compiledMagic = []byte("YARA")

// holds counts, per rule set, the Envs beyond the first that hold it: an
// update that finds the rules unchanged returns the same rule set in a new
// Env, and the Env it replaces must not delete it when released. Only the
// engine's own process updates and releases, so a process-wide count is
// enough.
var holds = struct {
	sync.Mutex
	n map[*Compiled]int
}{n: map[*Compiled]int{}}

// Update recompiles the rules when their files changed (a file's content,
// a file added to or removed from the directory): it returns an Env with
// the new rule set, whose Digest becomes the head's signatures_version.
// When nothing changed it returns env as it is. Rules that no longer
// compile are an error naming the file and line (*RulesError), and the
// engine keeps serving the last good rules.
func (s Scanner) Update(ctx context.Context, env psengine.Env) (psengine.Env, error) {
	cur, ok := CompiledOf(env)
	if !ok {
		return env, fmt.Errorf("%w: the env holds no compiled rules (run SetupEngine)", ErrConfig)
	}
	files, err := ruleFiles(cur.Rules)
	if err != nil {
		return env, err
	}
	d, err := digest(files)
	if err != nil {
		return env, fmt.Errorf("%w: %w", ErrRules, err)
	}
	if d == cur.Digest {
		holds.Lock()
		holds.n[cur]++
		holds.Unlock()
		return env, nil
	}
	next, err := s.Compile(ctx, env)
	if err != nil {
		return env, err
	}
	return compiledKey.With(env, next), nil
}

// Release removes the compiled rules of an Env the engine no longer uses
// (replaced by an update, or a candidate that failed its self-test),
// unless another Env still holds them.
func (Scanner) Release(_ context.Context, env psengine.Env) error {
	c, ok := CompiledOf(env)
	if !ok {
		return nil
	}
	holds.Lock()
	if holds.n[c] > 0 {
		holds.n[c]--
		if holds.n[c] == 0 {
			delete(holds.n, c)
		}
		holds.Unlock()
		return nil
	}
	holds.Unlock()
	return c.Remove()
}

// SelfTest checks that yara loads the compiled rules of a candidate: it
// scans an empty file with them.
func (Scanner) SelfTest(ctx context.Context, env psengine.Env) error {
	c, ok := CompiledOf(env)
	if !ok {
		return fmt.Errorf("%w: the env holds no compiled rules", ErrConfig)
	}
	empty := filepath.Join(c.Dir, "selftest.empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		return fmt.Errorf("yara self-test: %w", err)
	}
	defer os.Remove(empty)
	if _, err := c.ScanFile(ctx, empty); err != nil {
		return fmt.Errorf("yara self-test: the compiled rules of %s: %w", c.Rules, err)
	}
	return nil
}

// CheckHealth reports whether the rules are loaded: the compiled rules
// file exists, is readable and is one yarac wrote.
func (Scanner) CheckHealth(_ context.Context, env psengine.Env) error {
	c, ok := CompiledOf(env)
	if !ok {
		return fmt.Errorf("%w: no compiled rules", ErrConfig)
	}
	f, err := os.Open(c.Path)
	if err != nil {
		return fmt.Errorf("%w: the compiled rules: %w", ErrRules, err)
	}
	defer f.Close()
	head := make([]byte, len(compiledMagic))
	if _, err := io.ReadFull(f, head); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: reading the compiled rules: %w", ErrRules, err)
	}
	if !bytes.Equal(head, compiledMagic) {
		return fmt.Errorf("%w: %s is not a file yarac wrote", ErrRules, c.Path)
	}
	return nil
}
