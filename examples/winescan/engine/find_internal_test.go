//go:build unix

package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyswarm/psengine/winex"
)

// fakeWine is a Wine whose loader is a shell script: each run appends a
// line to runs, and the first `fail` runs print nothing (but stderr) and
// exit 1, as Wine failing around find.exe does; later runs print what
// find.exe prints for a file without the marker.
func fakeWine(t *testing.T, fail int) (w *winex.Wine, runs string) {
	t.Helper()
	dir := t.TempDir()
	prefix := filepath.Join(dir, "prefix")
	if err := os.MkdirAll(filepath.Join(prefix, "dosdevices"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(prefix, "system.reg"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(prefix, "dosdevices", "z:")); err != nil {
		t.Fatal(err)
	}
	runs = filepath.Join(dir, "runs")
	script := fmt.Sprintf(`#!/bin/sh
echo run >> %[1]q
if [ "$(wc -l < %[1]q)" -le %[2]d ]; then echo "wine: server went away" >&2; exit 1; fi
printf '\r\n---------- %%s\r\n' "$3"
exit 1
`, runs, fail)
	loader := filepath.Join(dir, "wine")
	if err := os.WriteFile(loader, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return &winex.Wine{Loader: loader, Prefix: prefix}, runs
}

func countRuns(t *testing.T, runs string) int {
	t.Helper()
	b, err := os.ReadFile(runs)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// A find.exe run that fails with no output at all is run once more; a
// second such failure is an error that carries what was printed on stderr.
func TestFindRunsOnceMoreAfterASilentFailure(t *testing.T) {
	file := filepath.Join(t.TempDir(), "clean.txt")
	if err := os.WriteFile(file, []byte("clean"), 0o644); err != nil {
		t.Fatal(err)
	}
	win := `Z:` + strings.ReplaceAll(file, "/", `\`)

	w, runs := fakeWine(t, 1)
	res, err := find(t.Context(), w, file, win)
	if err != nil || res.Report.Found || res.ExitCode != 1 {
		t.Fatalf("find after one silent failure = %+v, %v; want not found", res, err)
	}
	if n := countRuns(t, runs); n != 2 {
		t.Errorf("find.exe ran %d times, want 2", n)
	}

	w, runs = fakeWine(t, 2)
	_, err = find(t.Context(), w, file, win)
	var fe *FindError
	if !errors.Is(err, ErrFind) || !errors.As(err, &fe) || !strings.Contains(fe.Stderr, "server went away") || !strings.Contains(err.Error(), "server went away") ||
		!strings.Contains(err.Error(), fmt.Sprintf("searching %q", win)) {
		t.Errorf("find after two silent failures: %v; want ErrFind naming the path and the stderr", err)
	}
	if n := countRuns(t, runs); n != 2 {
		t.Errorf("find.exe ran %d times, want 2 (one retry only)", n)
	}
}
