package winex

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrPath reports a path that cannot be mapped between Unix and Windows.
var ErrPath = errors.New("winex: cannot map path")

// drive is a drive letter and what its dosdevices link points to.
type drive struct {
	letter byte // 'a'..'z'
	root   os.FileInfo
}

// drives stats the prefix's drive links ("c:" -> ../drive_c, "z:" -> /), in
// letter order; dangling links are skipped.
func (w *Wine) drives() ([]drive, error) {
	dd := filepath.Join(w.Prefix, "dosdevices")
	entries, err := os.ReadDir(dd)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPrefix, err)
	}
	var out []drive
	for _, e := range entries { // ReadDir sorts by name
		name := strings.ToLower(e.Name())
		if len(name) != 2 || name[1] != ':' || name[0] < 'a' || name[0] > 'z' {
			continue // com1, c:: (raw devices), stray files
		}
		fi, err := os.Stat(filepath.Join(dd, e.Name()))
		if err != nil || !fi.IsDir() {
			continue
		}
		out = append(out, drive{name[0], fi})
	}
	return out, nil
}

// ToWindows maps a Unix path to the Windows path a program under Wine sees,
// without starting a process, the way Wine does: starting with the path
// itself and going up one directory at a time, the first directory that is
// the root of a drive (the target of a dosdevices link: same device and
// inode) gives the drive letter, so the most specific drive wins (a file in
// drive_c is C:\..., not Z:\tmp\...). Missing components are skipped on the
// way up; a relative path is made absolute first.
//
// A name with a character Windows forbids (\ : * ? " < > | or a control
// character) cannot be passed to a Windows program and gives an error
// wrapping ErrPath, as does a path under no drive.
func (w *Wine) ToWindows(unixPath string) (string, error) {
	abs, err := filepath.Abs(unixPath)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %w", ErrPath, unixPath, err)
	}
	drives, err := w.drives()
	if err != nil {
		return "", err
	}
	for dir := abs; ; dir = filepath.Dir(dir) {
		if fi, err := os.Stat(dir); err == nil {
			for _, d := range drives {
				if !os.SameFile(fi, d.root) {
					continue
				}
				rest := strings.TrimPrefix(strings.TrimPrefix(abs, dir), "/")
				for _, part := range strings.Split(rest, "/") {
					if i := strings.IndexFunc(part, invalidWindowsRune); i >= 0 {
						return "", fmt.Errorf("%w: %q: %q holds %q, which Windows forbids in a name", ErrPath, unixPath, part, part[i])
					}
				}
				return strings.ToUpper(string(d.letter)) + `:\` + strings.ReplaceAll(rest, "/", `\`), nil
			}
		}
		if dir == filepath.Dir(dir) {
			return "", fmt.Errorf("%w: %q is under no drive of %s", ErrPath, unixPath, w.Prefix)
		}
	}
}

func invalidWindowsRune(r rune) bool {
	return r < 0x20 || strings.ContainsRune(`\:*?"<>|`, r)
}

// ToUnix maps a Windows path (`C:\windows\system32`, `c:/x`, `\\?\C:\x`,
// `\\?\unix\tmp\x`) to a Unix path, from the prefix's dosdevices links,
// without starting a process. Windows names are case-insensitive: each
// component that does not exist as written is matched against its directory
// ignoring case (find.exe prints paths upper-cased), and kept as written when
// nothing matches. ".." never climbs above the drive's root. Relative paths,
// drive-relative ones ("C:x"), UNC shares and unknown drives give an error
// wrapping ErrPath.
func (w *Wine) ToUnix(winPath string) (string, error) {
	p := winPath
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%w: %q holds a NUL byte", ErrPath, winPath)
	}
	for _, prefix := range []string{`\\?\`, `\??\`, `//?/`} {
		if strings.HasPrefix(p, prefix) {
			p = p[len(prefix):]
			break
		}
	}
	if len(p) >= 5 && strings.EqualFold(p[:5], `unix\`) || len(p) >= 5 && strings.EqualFold(p[:5], "unix/") {
		return filepath.Clean("/" + strings.ReplaceAll(p[5:], `\`, "/")), nil
	}
	if len(p) < 2 || p[1] != ':' || !isLetter(p[0]) {
		return "", fmt.Errorf("%w: %q has no drive letter", ErrPath, winPath)
	}
	if len(p) > 2 && p[2] != '\\' && p[2] != '/' {
		return "", fmt.Errorf("%w: %q is relative to its drive's current directory", ErrPath, winPath)
	}
	letter := p[0] | 0x20
	link := filepath.Join(w.Prefix, "dosdevices", string(letter)+":")
	root, err := os.Readlink(link)
	if err != nil {
		return "", fmt.Errorf("%w: %q: no drive %c: in %s", ErrPath, winPath, letter-0x20, w.Prefix)
	}
	if !filepath.IsAbs(root) {
		root = filepath.Join(filepath.Dir(link), root)
	}
	// Clean against a virtual root so that ".." stops at the drive's root.
	rel := filepath.Clean("/" + strings.ReplaceAll(p[2:], `\`, "/"))
	return resolveFold(filepath.Clean(root), rel), nil
}

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

// resolveFold joins rel ("/a/b") to root, matching each missing component
// case-insensitively against the directory's entries.
func resolveFold(root, rel string) string {
	cur := root
	parts := strings.Split(strings.TrimPrefix(rel, "/"), "/")
	for i, part := range parts {
		if part == "" {
			continue
		}
		next := filepath.Join(cur, part)
		if _, err := os.Lstat(next); err == nil {
			cur = next
			continue
		}
		entries, err := os.ReadDir(cur)
		match := ""
		if err == nil {
			for _, e := range entries {
				if strings.EqualFold(e.Name(), part) {
					match = e.Name()
					break
				}
			}
		}
		if match == "" {
			return filepath.Join(append([]string{cur}, parts[i:]...)...)
		}
		cur = filepath.Join(cur, match)
	}
	return cur
}
