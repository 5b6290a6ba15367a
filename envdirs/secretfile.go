package envdirs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// MaxSecretSize bounds the secret file ReadSecretFile reads.
const MaxSecretSize = 64 << 10

// ErrEmptySecret reports a secret file with nothing in it but line endings.
var ErrEmptySecret = errors.New("envdirs: empty secret file")

// ReadSecretFile reads a secret (a webhook secret, an API key) from the file
// at path, refusing, as ssh does a private key, a file that others could read
// or change:
//
//   - path must name a regular file (symbolic links are followed, as
//     Kubernetes secret volumes use them), owned by the current user or root,
//     with no permission bits for the group or others (mode & 0077 == 0, such
//     as 0600 or 0400);
//   - its directory must not be writable by the group or others, unless it
//     has the sticky bit (as /tmp): else anyone could replace the file.
//
// A refusal is a *CheckError (Role "secret file") wrapping ErrInsecure or
// ErrNotRegular that names the path and the fix ("chmod 600 PATH"); a file
// that cannot be read gives the file-system error. The secret is the file's
// content less its trailing line endings (\n or \r\n, as echo or an editor
// leave): an empty one is ErrEmptySecret, one over MaxSecretSize an error.
// Ownership and modes are not checked on Windows.
func ReadSecretFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() { // refused before it is opened (a FIFO would block)
		return nil, checkSecretFile(path, fi)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Judge the file opened, not whatever the path names by now.
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := checkSecretFile(path, fi); err != nil {
		return nil, err
	}
	if fi.Size() > MaxSecretSize {
		return nil, fmt.Errorf("envdirs: secret file %s: %d bytes, more than %d", path, fi.Size(), MaxSecretSize)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSecretSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxSecretSize {
		return nil, fmt.Errorf("envdirs: secret file %s: more than %d bytes", path, MaxSecretSize)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrEmptySecret, path)
	}
	return b, nil
}

func checkSecretFile(path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return &CheckError{Role: "secret file", Path: path, Mode: fi.Mode().Perm(),
			Problem: fmt.Sprintf("not a regular file (%v)", fi.Mode().Type()), Err: ErrNotRegular}
	}
	if !permsMeaningful {
		return nil
	}
	if uid, ok := owner(fi); ok && uid != os.Getuid() && uid != 0 {
		return &CheckError{Role: "secret file", Path: path, Mode: fi.Mode().Perm(),
			Problem: fmt.Sprintf("owned by uid %d, want %d (or root)", uid, os.Getuid()),
			Fix:     "chown " + shellQuote(path) + " to yourself", Err: ErrInsecure}
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return &CheckError{Role: "secret file", Path: path, Mode: perm,
			Problem: fmt.Sprintf("mode %#o is too open: the group or others may read or change it, want 0600 or 0400", perm),
			Fix:     "chmod 600 " + shellQuote(path), Err: ErrInsecure}
	}
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if perm := di.Mode().Perm(); perm&0o022 != 0 && di.Mode()&fs.ModeSticky == 0 {
		return &CheckError{Role: "secret file", Path: path, Mode: fi.Mode().Perm(),
			Problem: fmt.Sprintf("its directory %s (mode %#o) lets the group or others replace it", dir, perm),
			Fix:     "chmod go-w " + shellQuote(dir), Err: ErrInsecure}
	}
	return nil
}

// shellQuote returns path as a shell word: itself when it needs no quoting,
// else in single quotes.
func shellQuote(path string) string {
	if path != "" && strings.Trim(path, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+,:@%=") == "" {
		return path
	}
	return "'" + strings.ReplaceAll(path, "'", `'\''`) + "'"
}
