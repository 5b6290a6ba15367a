package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Errors of the files found under a directory argument of analyze: each
// such file is reported (and counted as failed), never skipped silently.
var (
	// ErrSymlinkOutside: a symbolic link under the directory leads out of
	// it; it is not followed.
	ErrSymlinkOutside = errors.New("symbolic link leads out of the directory; not followed")
	// ErrNotRegular: a FIFO, socket or device under the directory; it is
	// not read.
	ErrNotRegular = errors.New("not a regular file")
	// ErrEmptyDir: a directory argument holds no file.
	ErrEmptyDir = errors.New("directory holds no file")
)

// input is one artifact of analyze: an argument, or a file found under a
// directory argument.
type input struct {
	name string // the argument, or the file's path: what results are printed under
	err  error  // why it cannot be analyzed (found while walking); nil otherwise
}

// expandInputs turns the arguments into the artifacts to analyze, in order:
// a directory (an argument that is a path, not a URI, naming a directory)
// becomes the files under it, walked recursively, in lexical order of their
// paths (see walkTree); anything else stays as it is. URL artifacts are
// never paths.
func expandInputs(kind string, args []string) []input {
	out := make([]input, 0, len(args))
	for _, arg := range args {
		if kind == "url" || !isPathArg(arg) {
			out = append(out, input{name: arg})
			continue
		}
		st, err := os.Stat(arg)
		if err != nil || !st.IsDir() {
			out = append(out, input{name: arg}) // analysis reports what is wrong with it
			continue
		}
		found := walkTree(arg)
		if len(found) == 0 {
			found = []input{{name: arg, err: ErrEmptyDir}}
		}
		out = append(out, found...)
	}
	return out
}

// isPathArg tells whether arg is a path rather than stdin or a URI.
func isPathArg(arg string) bool {
	if arg == "-" {
		return false
	}
	u, err := url.Parse(arg)
	return err != nil || u.Scheme == "" || len(u.Scheme) == 1 // a Windows drive letter
}

// walkTree lists the files under the directory root, sorted by path (byte
// order, as `find ROOT | sort`). Symbolic links are not followed out of
// the tree: a link to a file inside it is listed (under the link's path),
// a link to a directory inside it is not descended into (its files are
// listed under their own paths), and a link that leads out of the tree
// (or nowhere) is listed with its error. Directories that cannot be read,
// FIFOs, sockets and devices are listed with theirs.
func walkTree(root string) []input {
	start := root
	if st, err := os.Lstat(root); err == nil && st.Mode()&fs.ModeSymlink != 0 {
		// The argument itself may be a link to the directory.
		start = strings.TrimRight(root, string(filepath.Separator)) + string(filepath.Separator)
	}
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return []input{{name: root, err: err}}
	}
	if real, err = filepath.Abs(real); err != nil {
		return []input{{name: root, err: err}}
	}
	var out []input
	_ = filepath.WalkDir(start, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			out = append(out, input{name: path, err: err})
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		switch t := d.Type(); {
		case d.IsDir():
		case t.IsRegular():
			out = append(out, input{name: path})
		case t&fs.ModeSymlink != 0:
			if in, ok := followLink(real, path); ok {
				out = append(out, in)
			}
		default:
			out = append(out, input{name: path, err: fmt.Errorf("%w (%s)", ErrNotRegular, t.Type())})
		}
		return nil
	})
	slices.SortFunc(out, func(a, b input) int { return strings.Compare(a.name, b.name) })
	return out
}

// followLink resolves the link at path found under the tree whose real
// path is root: ok false for a link to a directory inside the tree.
func followLink(root, path string) (input, bool) {
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return input{name: path, err: err}, true
	}
	if target, err = filepath.Abs(target); err != nil {
		return input{name: path, err: err}, true
	}
	if rel, err := filepath.Rel(root, target); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return input{name: path, err: fmt.Errorf("%w: %s", ErrSymlinkOutside, target)}, true
	}
	st, err := os.Stat(target)
	switch {
	case err != nil:
		return input{name: path, err: err}, true
	case st.IsDir():
		return input{}, false
	case !st.Mode().IsRegular():
		return input{name: path, err: fmt.Errorf("%w (%s)", ErrNotRegular, st.Mode().Type())}, true
	}
	return input{name: path}, true
}
