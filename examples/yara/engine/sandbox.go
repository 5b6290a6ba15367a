package engine

import "github.com/polyswarm/psengine"

var _ psengine.SandboxDeclarer = Scanner{}

// SandboxNeeds declares what a sandboxed worker child needs: the compiled
// rules (in the engine's temp directory) and the yara program.
func (Scanner) SandboxNeeds(env psengine.Env) psengine.SandboxNeeds {
	c, ok := CompiledOf(env)
	if !ok {
		return psengine.SandboxNeeds{}
	}
	return psengine.SandboxNeeds{Read: []string{c.Dir, c.Yara}}
}
