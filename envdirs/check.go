package envdirs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

var (
	// ErrInsecure reports a runtime or secrets directory (or secret file)
	// that other users could read, write or own; the error is a *CheckError.
	ErrInsecure = errors.New("envdirs: insecure permissions")
	// ErrNotDir reports a directory path that names something else.
	ErrNotDir = errors.New("envdirs: not a directory")
	// ErrNotRegular reports a secret file path that names something other
	// than a regular file (a directory, a FIFO, a device).
	ErrNotRegular = errors.New("envdirs: not a regular file")
	// ErrEnsure reports a directory that Ensure could not create.
	ErrEnsure = errors.New("envdirs: cannot create directory")
)

// CheckError reports one problem found by Check or ReadSecretFile. Err is
// ErrInsecure, ErrNotDir, ErrNotRegular or the file-system error
// (fs.ErrNotExist for a missing runtime directory).
type CheckError struct {
	Role    string      // "runtime", "secrets" (the directory or a file in it) or "secret file"
	Path    string      // the offending directory or file
	Mode    fs.FileMode // its permission bits, when known
	Problem string      // human-readable: "mode 0755, want 0700"
	Fix     string      // the command that fixes it, when one does: "chmod 700 /run/e"
	Err     error
}

// Error names the path, the problem and the fix, as ssh does for a key file
// others can read: "envdirs: runtime directory: /run/e: mode 0777, want
// 0700 (fix: chmod 700 /run/e)".
func (e *CheckError) Error() string {
	what := e.Role
	if e.Role == "runtime" || e.Role == "secrets" {
		what += " directory"
	}
	msg := fmt.Sprintf("envdirs: %s: %s: %s", what, e.Path, e.Problem)
	if e.Fix != "" {
		msg += " (fix: " + e.Fix + ")"
	}
	return msg
}

func (e *CheckError) Unwrap() error { return e.Err }

// Check verifies the directories that hold sensitive things:
//
//   - Runtime must exist and be a directory owned by the current user that
//     neither the group nor others can write to (mode & 0022 == 0: 0700, as
//     Ensure creates it and XDG_RUNTIME_DIR is, or 0755, as systemd's
//     RuntimeDirectory= is by default);
//   - Secrets, when it exists, must be owned by the current user (or root),
//     give others no access at all and the group no write access (mode &
//     0027 == 0), and nothing inside may be writable by the group or
//     readable or writable by others (mode & 0026 == 0; symbolic links are
//     judged by their targets).
//
// It returns nil or every problem found, joined (errors.Join) *CheckError
// values: errors.Is(err, ErrInsecure) and errors.As(err, &checkErr) work.
// Each names the path, and the command that fixes it (CheckError.Fix). Empty
// fields are skipped. Check never changes anything: Ensure creates.
// Ownership and modes are not checked on Windows.
func (d Dirs) Check() error {
	var errs []error
	if d.Runtime != "" {
		errs = append(errs, checkRuntime(d.Runtime)) // errors.Join drops a nil
	}
	if d.Secrets != "" {
		errs = append(errs, checkSecrets(d.Secrets)...)
	}
	return errors.Join(errs...)
}

func checkRuntime(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		problem := err.Error()
		if errors.Is(err, fs.ErrNotExist) {
			problem = "does not exist (call Ensure)"
		}
		return &CheckError{Role: "runtime", Path: path, Problem: problem, Err: err}
	}
	if !fi.IsDir() {
		return &CheckError{Role: "runtime", Path: path, Mode: fi.Mode().Perm(), Problem: "not a directory", Err: ErrNotDir}
	}
	if !permsMeaningful {
		return nil
	}
	if uid, ok := owner(fi); ok && uid != os.Getuid() {
		return &CheckError{Role: "runtime", Path: path, Mode: fi.Mode().Perm(),
			Problem: fmt.Sprintf("owned by uid %d, want %d", uid, os.Getuid()),
			Fix:     "use a directory of your own (" + EnvRuntime + ")", Err: ErrInsecure}
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return &CheckError{Role: "runtime", Path: path, Mode: perm,
			Problem: fmt.Sprintf("mode %#o lets the group or others write in it, want 0700", perm),
			Fix:     "chmod 700 " + shellQuote(path), Err: ErrInsecure}
	}
	return nil
}

func checkSecrets(root string) []error {
	fi, err := os.Stat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // nothing to protect
	case err != nil:
		return []error{&CheckError{Role: "secrets", Path: root, Problem: err.Error(), Err: err}}
	case !fi.IsDir():
		return []error{&CheckError{Role: "secrets", Path: root, Mode: fi.Mode().Perm(), Problem: "not a directory", Err: ErrNotDir}}
	case !permsMeaningful:
		return nil
	}
	var errs []error
	if uid, ok := owner(fi); ok && uid != os.Getuid() && uid != 0 {
		errs = append(errs, &CheckError{Role: "secrets", Path: root, Mode: fi.Mode().Perm(),
			Problem: fmt.Sprintf("owned by uid %d, want %d (or root)", uid, os.Getuid()),
			Fix:     "use a directory of your own (" + EnvSecrets + ")", Err: ErrInsecure})
	}
	if perm := fi.Mode().Perm(); perm&0o027 != 0 {
		errs = append(errs, &CheckError{Role: "secrets", Path: root, Mode: perm,
			Problem: fmt.Sprintf("mode %#o lets others in or the group write, want 0700 or 0750", perm),
			Fix:     "chmod 700 " + shellQuote(root), Err: ErrInsecure})
	}
	walkErr := filepath.WalkDir(root, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, &CheckError{Role: "secrets", Path: path, Problem: err.Error(), Err: err})
			return nil // WalkDir skips what it could not read
		}
		if path == root {
			return nil
		}
		info, err := de.Info()
		if err == nil && de.Type()&fs.ModeSymlink != 0 {
			info, err = os.Stat(path)
		}
		if err != nil {
			errs = append(errs, &CheckError{Role: "secrets", Path: path, Problem: err.Error(), Err: err})
			return nil
		}
		if perm := info.Mode().Perm(); perm&0o026 != 0 {
			want := "600"
			if info.IsDir() {
				want = "700"
			}
			errs = append(errs, &CheckError{Role: "secrets", Path: path, Mode: perm,
				Problem: fmt.Sprintf("mode %#o lets others read or write it, or the group write it", perm),
				Fix:     "chmod " + want + " " + shellQuote(path), Err: ErrInsecure})
		}
		return nil
	})
	if walkErr != nil {
		errs = append(errs, &CheckError{Role: "secrets", Path: root, Problem: walkErr.Error(), Err: walkErr})
	}
	return errs
}

// Ensure creates the missing directories: Runtime and Secrets with mode 0700,
// the others (and missing parents) with 0755, subject to the umask for 0755.
// Existing directories are left as they are: call Check afterwards to refuse
// unsafe ones. Empty fields and Temp are skipped. Errors wrap ErrEnsure and the
// file-system error.
func (d Dirs) Ensure() error {
	for _, dir := range []struct {
		role, path string
		private    bool
	}{
		{"home", d.Home, false}, {"bin", d.Bin, false}, {"lib", d.Lib, false},
		{"config", d.Config, false}, {"secrets", d.Secrets, true}, {"cache", d.Cache, false},
		{"data", d.Data, false}, {"state", d.State, false}, {"runtime", d.Runtime, true},
	} {
		if dir.path == "" {
			continue
		}
		if err := ensureDir(dir.path, dir.private); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrEnsure, dir.role, err)
		}
	}
	return nil
}

func ensureDir(path string, private bool) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if !private {
		return os.MkdirAll(path, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // created meanwhile by someone: Check decides
		}
		return err
	}
	// A strange umask may have removed owner bits: the mode must be exact.
	return os.Chmod(path, 0o700)
}

// CreateTemp creates a scratch file in Temp (os.TempDir when empty) whose name
// is TempPrefix followed by pattern, where a "*" in pattern is replaced by a
// random string (as os.CreateTemp). The file has mode 0600; the caller closes
// and removes it.
func (d Dirs) CreateTemp(pattern string) (*os.File, error) {
	return os.CreateTemp(d.Temp, d.TempPrefix+pattern)
}
