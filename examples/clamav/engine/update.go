package engine

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/examples/clamav/clamd"
	"github.com/polyswarm/psengine/examples/clamav/database"
)

// DefaultReloadWait bounds how long Update waits, after asking clamd to
// reload a versioned database, for its VERSION to name that version
// (Scanner.ReloadWait). A reload that succeeds ends the wait as soon as
// VERSION shows it (a real database takes seconds to load); only a
// reload clamd refused lasts the whole wait.
const DefaultReloadWait = 2 * time.Minute

// Polling of VERSION while clamd reloads: from reloadPollMin, doubling up
// to reloadPollMax.
const (
	reloadPollMin = 5 * time.Millisecond
	reloadPollMax = 200 * time.Millisecond
)

// healthTimeout bounds the PING of CheckHealth.
const healthTimeout = 3 * time.Second

// ErrReloadRefused is wrapped by the error of an update whose database
// clamd did not load: its VERSION did not come to name the database's
// version within ReloadWait (clamd keeps scanning with the previous
// databases, and says why in its log).
var ErrReloadRefused = errors.New("clamd did not load the new database")

var (
	_ psengine.Updater       = Scanner{}
	_ psengine.HealthChecker = Scanner{}
)

// reload is what the last update saw: clamd's version, when, and the
// database directory it had clamd load.
type reload struct {
	Version  clamd.Version
	At       time.Time
	Database database.Snapshot // zero without Scanner.DatabaseDir
}

var reloadKey = psengine.NewKey[reload]("clamav.reload")

// Update has clamd load new signature files (freshclam's, or written by
// hand into its DatabaseDirectory) and reads its VERSION for the head's
// signatures_version.
//
// With DatabaseDir (clamd's DatabaseDirectory, readable here), an update
// tells the truth:
//   - nothing changed since the last update (the same files, by SHA-256):
//     no RELOAD; the engine keeps its Env as it is;
//   - the new or changed files are first loaded by clamscan (Clamscan):
//     one that ClamAV cannot load fails the update, naming the file, and
//     clamd is not asked to reload (it would refuse, keep its previous
//     databases and only say so in its log);
//   - after RELOAD, when the directory holds a daily database with a
//     version (daily.cvd, .cld, .cud), Update waits until clamd's VERSION
//     names it, no longer than the reload takes (ReloadWait at most: past
//     it, the update fails with ErrReloadRefused); without one, clamd
//     gives no sign of the reload's end, and Update returns once RELOAD is
//     answered.
//
// Without DatabaseDir, Update cannot see the files: it asks for a RELOAD
// every time and reports the VERSION clamd gives right after, which names
// the new database only once clamd has loaded it.
//
// The first update of an engine always reloads: what clamd loaded before
// is not known. A clamd that cannot be reached is an error: the engine
// keeps its head, and scans answer unknown until it is back. Errors of
// clamscan that is missing or cannot run fail the update too.
func (s Scanner) Update(ctx context.Context, env psengine.Env) (psengine.Env, error) {
	addr, err := s.address(env)
	if err != nil {
		return env, err
	}
	last, updated := reloadKey.Value(env)
	var snap database.Snapshot
	if s.DatabaseDir != "" {
		if snap, err = database.Read(s.DatabaseDir, last.Database); err != nil {
			return env, err
		}
		if updated && last.Database.Dir == snap.Dir && snap.Digest() == last.Database.Digest() {
			env.Logger().DebugContext(ctx, "clamav database unchanged; no reload", "dir", snap.Dir, "files", len(snap.Files))
			return env, psengine.ErrUnchanged
		}
		changed := snap.Changed(last.Database)
		if err := database.Check(ctx, s.Clamscan, changed); err != nil {
			if errors.Is(err, exec.ErrNotFound) {
				err = fmt.Errorf("%w (set Clamscan, or install Debian's clamav package)", err)
			}
			return env, err
		}
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
	v := before
	if snap.Version != "" {
		if v, err = s.awaitVersion(ctx, c, snap.Version); err != nil {
			return env, err
		}
	} else if v, err = c.Version(ctx); err != nil {
		return env, err
	}
	env.Logger().InfoContext(ctx, "clamd reloaded its databases", "version", v.Raw, "was", before.Raw,
		"changed_files", len(snap.Changed(last.Database)))
	return reloadKey.With(env, reload{Version: v, At: time.Now(), Database: snap}), nil
}

// awaitVersion polls clamd's VERSION until it names the database version
// want, or ReloadWait passes.
func (s Scanner) awaitVersion(ctx context.Context, c *clamd.Conn, want string) (clamd.Version, error) {
	wait := s.ReloadWait
	if wait <= 0 {
		wait = DefaultReloadWait
	}
	start := time.Now()
	poll := reloadPollMin
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return clamd.Version{}, fmt.Errorf("clamd reloading: %w", context.Cause(ctx))
		case <-t.C:
		}
		v, err := c.Version(ctx)
		if err != nil {
			return clamd.Version{}, fmt.Errorf("clamd reloading: %w", err)
		}
		if v.Signatures == want {
			return v, nil
		}
		if time.Since(start) >= wait {
			return v, fmt.Errorf("%w: its VERSION is still %q %v after RELOAD, not database version %s (see clamd's log)",
				ErrReloadRefused, v.Raw, wait, want)
		}
		t.Reset(min(poll, wait-time.Since(start)))
		poll = min(2*poll, reloadPollMax)
	}
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
