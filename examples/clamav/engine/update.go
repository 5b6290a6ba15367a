package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/examples/clamav/clamd"
)

// DefaultReloadWait is how long Update waits, after asking clamd to
// reload, for its VERSION to name a new database (Scanner.ReloadWait).
const DefaultReloadWait = 20 * time.Second

// reloadPoll is how often VERSION is asked while clamd reloads.
const reloadPoll = 50 * time.Millisecond

// healthTimeout bounds the PING of CheckHealth.
const healthTimeout = 3 * time.Second

var (
	_ psengine.Updater       = Scanner{}
	_ psengine.HealthChecker = Scanner{}
)

// reload is clamd's version as an update last saw it, and when.
type reload struct {
	Version clamd.Version
	At      time.Time
}

var reloadKey = psengine.NewKey[reload]("clamav.reload")

// Update asks clamd to reload its signature databases (RELOAD: new files
// written into its DatabaseDirectory, by freshclam or by hand) and reads
// its VERSION for the head's signatures_version. clamd reloads in the
// background and reports neither the end of a reload nor its failure (a
// database that does not load leaves the previous one scanning): Update
// waits until VERSION changes, for ReloadWait at most, and reports the
// version clamd gives then. A clamd that cannot be reached is an error:
// the engine keeps its head, and scans answer unknown until it is back.
func (s Scanner) Update(ctx context.Context, env psengine.Env) (psengine.Env, error) {
	addr, err := s.address(env)
	if err != nil {
		return env, err
	}
	c, err := clamd.Dial(ctx, addr)
	if err != nil {
		return env, err
	}
	defer c.Close()
	before, err := c.Version(ctx)
	if err != nil {
		return env, err
	}
	if err := clamd.Reload(ctx, addr); err != nil {
		return env, err
	}
	wait := s.ReloadWait
	if wait <= 0 {
		wait = DefaultReloadWait
	}
	deadline := time.Now().Add(wait)
	v := before
	tick := time.NewTicker(reloadPoll)
	defer tick.Stop()
	for v.Raw == before.Raw && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return env, fmt.Errorf("clamd reloading: %w", context.Cause(ctx))
		case <-tick.C:
		}
		if v, err = c.Version(ctx); err != nil {
			return env, fmt.Errorf("clamd reloading: %w", err)
		}
	}
	if v.Raw == before.Raw {
		env.Logger().InfoContext(ctx, "clamd reloaded; its VERSION is unchanged", "version", v.Raw, "waited", wait)
		if r, ok := reloadKey.Value(env); ok && r.Version == v {
			// Nothing new to record: an Env does not grow with every
			// periodic update.
			return env, nil
		}
	}
	return reloadKey.With(env, reload{Version: v, At: time.Now()}), nil
}

// CheckHealth says whether clamd answers PING: the engine runs, and
// answers unknown, while it does not.
func (s Scanner) CheckHealth(ctx context.Context, env psengine.Env) error {
	addr, err := s.address(env)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	c, err := clamd.Dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Ping(ctx)
}

// answerVersion is the version an answer carries: what the worker's
// connection saw when it connected, or what the last update saw if that is
// more recent (a reload does not reconnect the workers).
func answerVersion(env psengine.Env, sess *Session) clamd.Version {
	v, at := sess.VersionAt()
	if r, ok := reloadKey.Value(env); ok && r.At.After(at) {
		return r.Version
	}
	return v
}

// reloadedHead is the head an update saw, if any.
func reloadedHead(env psengine.Env) (clamd.Version, bool) {
	r, ok := reloadKey.Value(env)
	return r.Version, ok
}
