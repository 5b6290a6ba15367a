package engine

import "github.com/polyswarm/psengine"

var _ psengine.SandboxDeclarer = Scanner{}

// SandboxNeeds declares what a sandboxed worker child needs: to connect
// to clamd (its Unix socket, or its TCP port).
func (s Scanner) SandboxNeeds(env psengine.Env) psengine.SandboxNeeds {
	addr, err := s.address(env)
	if err != nil {
		return psengine.SandboxNeeds{} // setup refused it already
	}
	return psengine.SandboxNeeds{Dial: []string{addr.String()}}
}
