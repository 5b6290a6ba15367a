//go:build unix

package clamdtest

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// ReplaceDatabase replaces the daemon's signature files with cfg's (only
// its signatures and CVDVersion apply), as freshclam would: clamd uses
// them once it reloads (RELOAD). With cfg.CVDVersion, VERSION then names
// that version.
func (d *Daemon) ReplaceDatabase(tb testing.TB, cfg DaemonConfig) {
	tb.Helper()
	entries, err := os.ReadDir(d.DBDir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(d.DBDir, e.Name())); err != nil {
			tb.Fatal(err)
		}
	}
	d.installDatabase(tb, cfg)
}

// installDatabase writes cfg's signatures into the daemon's database
// directory: test.ndb and test.hdb, or, with cfg.CVDVersion, a daily.cud of
// that version, built in a directory of its own.
func (d *Daemon) installDatabase(tb testing.TB, cfg DaemonConfig) {
	tb.Helper()
	if cfg.CVDVersion == 0 {
		writeDatabase(tb, d.DBDir, "test", cfg)
		return
	}
	build := filepath.Join(d.Dir, "build-"+strconv.Itoa(cfg.CVDVersion))
	if err := os.RemoveAll(build); err != nil {
		tb.Fatal(err)
	}
	if err := os.Mkdir(build, 0o755); err != nil {
		tb.Fatal(err)
	}
	writeDatabase(tb, build, "daily", cfg)
	packCVD(tb, build, cfg.CVDVersion, d.DBDir)
}
