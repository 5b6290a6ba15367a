package fetch

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// pidDash follows the prefix in temp file names: this process's ID and "-".
var pidDash = strconv.Itoa(os.Getpid()) + "-"

// RemoveStale removes the temp files that processes no longer running left
// in dir: after a crash or a kill, a Content's temp file outlives its
// process. Temp files are named prefix, the creating process's ID, "-" and
// a random part; RemoveStale removes the regular files so named whose
// process is gone, and leaves alone every other name, directory and
// symbolic link (never followed), this process's files and those of live
// processes (another engine sharing the directory, a parent or child
// process). dir "" is os.TempDir() and prefix "" is $TMPPREFIX or
// DefaultTempPrefix (of prefix only the last path element counts), as for
// a Policy's temp files. The engine calls it at Start with its policy's
// TempDir and TempPrefix. It returns the paths of the files it removed and
// the first error met (ErrUnreachable: the directory cannot be read, a file
// cannot be removed), having still tried every file. Where the platform
// cannot tell whether a process runs (not unix), it removes nothing.
func RemoveStale(dir, prefix string) (removed []string, err error) {
	if dir == "" {
		dir = os.TempDir()
	}
	if prefix = lastElem(prefix); prefix == "" {
		prefix = defaultTempPrefix()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: removing stale temp files: %w", ErrUnreachable, err)
	}
	self := os.Getpid()
	var first error
	for _, e := range entries {
		pid, ok := tempPID(e.Name(), prefix)
		if !ok || pid == self || !e.Type().IsRegular() || !processGone(pid) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if err := os.Remove(path); err != nil {
			if !os.IsNotExist(err) && first == nil { // another process may have removed it first
				first = fmt.Errorf("%w: removing stale temp file: %w", ErrUnreachable, err)
			}
			continue
		}
		removed = append(removed, path)
	}
	return removed, first
}

// tempPID returns the process ID in a temp file name: prefix, a positive
// decimal number (no sign, no leading zero), "-", and more.
func tempPID(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, false
	}
	digits, random, ok := strings.Cut(rest, "-")
	if !ok || random == "" || digits == "" || digits[0] == '0' || len(digits) > 9 ||
		strings.TrimLeft(digits, "0123456789") != "" {
		return 0, false
	}
	pid, err := strconv.Atoi(digits)
	return pid, err == nil
}
