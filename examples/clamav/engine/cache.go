package engine

import "github.com/polyswarm/psengine"

var _ psengine.CacheKeyer = Scanner{}

// CacheKey keeps clamd's answers out of the engine's result cache: they
// depend on the databases clamd has loaded, which clamd reloads by itself
// (its SelfCheck, freshclam's NotifyClamd) without the engine's Update, so
// the head's signatures_version (asked at start and at each update) can
// name older databases than the ones that answer; and an engine started
// while clamd was down has none at all. A cached answer could then be
// served after new signatures changed it. Each scan asks clamd.
func (Scanner) CacheKey(psengine.Env, psengine.Artifact) (string, bool) { return "", false }
