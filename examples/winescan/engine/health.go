//go:build unix

package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/winex"
)

var _ psengine.HealthChecker = Scanner{}

// CheckHealth says whether the Wine prefix is usable: a directory owned by
// this process's user (Wine refuses any other) holding the system.reg that
// wineboot writes. It runs no Wine program. Errors wrap winex.ErrPrefix.
func (s Scanner) CheckHealth(_ context.Context, env psengine.Env) error {
	sess, err := s.sessionFor(env)
	if err != nil {
		return err
	}
	prefix := sess.Wine.Prefix
	for _, p := range []string{prefix, filepath.Join(prefix, "system.reg")} {
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("%w: %s is missing", winex.ErrPrefix, p)
		case err != nil:
			return fmt.Errorf("%w: %w", winex.ErrPrefix, err)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
			return fmt.Errorf("%w: %s is owned by uid %d, not by us (uid %d)", winex.ErrPrefix, p, st.Uid, os.Getuid())
		}
	}
	return nil
}
