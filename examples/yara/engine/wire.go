package engine

import (
	"bytes"
	"encoding/gob"
	"fmt"

	"github.com/polyswarm/psengine/examples/yara/libyara"
)

// compiledWire is a Compiled as it crosses to a child process.
type compiledWire struct {
	Rules     string
	Files     []string
	Sources   []Source
	Digest    string
	Externals []External
	Policy    Policy
	Warnings  []string
	Saved     []byte // libyara's saved rules
}

// GobEncode encodes the rule set with its compiled rules in libyara's
// saved form, for the engine's child processes (process backend), which
// load them instead of compiling. It is safe while scans run.
func (c *Compiled) GobEncode() ([]byte, error) {
	c.mu.Lock()
	rules, closed := c.rules, c.closed
	if !closed {
		c.out++ // keeps the rules alive while they are saved
	}
	c.mu.Unlock()
	if closed || rules == nil {
		return nil, fmt.Errorf("%w: the rule set was released", ErrRules)
	}
	var saved bytes.Buffer
	err := rules.Save(&saved)
	c.mu.Lock()
	c.out--
	if c.closed && c.out == 0 {
		c.freeRules()
	}
	c.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("yara: saving the compiled rules: %w", err)
	}
	w := compiledWire{Rules: c.Rules, Files: c.Files, Sources: c.Sources, Digest: c.Digest,
		Externals: c.Externals, Policy: c.Policy, Warnings: c.Warnings, Saved: saved.Bytes()}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(w); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// GobDecode loads what GobEncode wrote: only bytes the engine's own
// parent process encoded (libyara trusts saved rules).
func (c *Compiled) GobDecode(data []byte) error {
	var w compiledWire
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&w); err != nil {
		return err
	}
	rules, err := libyara.LoadRules(w.Saved)
	if err != nil {
		return fmt.Errorf("yara: loading the compiled rules: %w", err)
	}
	*c = Compiled{Rules: w.Rules, Files: w.Files, Sources: w.Sources, Digest: w.Digest,
		Externals: w.Externals, Policy: w.Policy, Warnings: w.Warnings}
	c.config, c.namesMatter = c.cacheConfig(), true // the sources may not be readable here: assume names matter
	c.serve(rules)
	return nil
}
