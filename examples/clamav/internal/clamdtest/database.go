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
	if cfg.CVDVersion == 0 {
		if err := writeDatabase(d.DBDir, "test", cfg); err != nil {
			tb.Fatal(err)
		}
		return
	}
	build := filepath.Join(d.Dir, "build-"+strconv.Itoa(cfg.CVDVersion))
	if err := os.RemoveAll(build); err != nil {
		tb.Fatal(err)
	}
	if err := os.Mkdir(build, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := writeDatabase(build, "daily", cfg); err != nil {
		tb.Fatal(err)
	}
	packCVD(tb, build, cfg.CVDVersion, d.DBDir)
}
