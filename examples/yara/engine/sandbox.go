package engine

import "github.com/polyswarm/psengine"

var _ psengine.SandboxDeclarer = Scanner{}

// SandboxNeeds declares what a sandboxed worker child needs besides the
// sandbox's defaults: nothing. The rules reach a child compiled, in the Env
// (libyara's saved form, loaded in memory), and an artifact is scanned from
// the file or memory the engine hands it; no rule file, no yara program and
// no network is needed. A scanner that reads files at scan time declares
// them here (SandboxNeeds.Read).
func (Scanner) SandboxNeeds(psengine.Env) psengine.SandboxNeeds { return psengine.SandboxNeeds{} }
