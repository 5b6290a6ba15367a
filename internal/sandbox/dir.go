package sandbox

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
)

// Dir is one child's private directory, made by the parent: Temp, the
// child's TMPDIR, which it may write, and In, where the parent stages the
// artifacts the child scans, which it may only read.
type Dir struct {
	Root string
	Temp string // Root/tmp
	In   string // Root/in
	// Owner is the child's uid and gid when it runs as another user (-1:
	// the parent's): Temp is theirs, and staged artifacts are copies it
	// can read.
	UID, GID int
	seq      atomic.Uint64
}

// NewDir makes a child's directory under parent (os.TempDir() when
// empty), named prefix followed by "child-" and a random string. Temp is
// given to uid and gid when they are not -1 (the caller must be able to
// chown).
func NewDir(parent, prefix string, uid, gid int) (*Dir, error) {
	root, err := os.MkdirTemp(cmp.Or(parent, os.TempDir()), prefix+"child-")
	if err != nil {
		return nil, fmt.Errorf("sandbox: the child's directory: %w", err)
	}
	d := &Dir{Root: root, Temp: filepath.Join(root, "tmp"), In: filepath.Join(root, "in"), UID: uid, GID: gid}
	err = os.Chmod(root, 0o711) // another user's child must traverse it
	if err == nil {
		err = os.Mkdir(d.Temp, 0o700)
	}
	if err == nil {
		err = os.Mkdir(d.In, 0o711)
	}
	if err == nil && uid >= 0 {
		err = os.Chown(d.Temp, uid, gid)
	}
	if err != nil {
		_ = os.RemoveAll(root)
		return nil, fmt.Errorf("sandbox: the child's directory: %w", err)
	}
	return d, nil
}

// Remove deletes the directory and everything in it.
func (d *Dir) Remove() error { return os.RemoveAll(d.Root) }

// Stage makes the file at path readable by the child, as N-BASE in In
// (BASE its base name): a hard link to it (a copy when a link cannot be
// made, or the child runs as another user). release removes it; call it
// once the child is done with it. A link and its removal are two
// directory updates: the cheapest way, after passing descriptors, to let
// a confined child read a file anywhere.
func (d *Dir) Stage(path string) (staged string, release func(), err error) {
	staged = filepath.Join(d.In, strconv.FormatUint(d.seq.Add(1), 10)+"-"+filepath.Base(path))
	if d.UID >= 0 || os.Link(path, staged) != nil {
		if err := copyFile(path, staged); err != nil {
			return "", nil, fmt.Errorf("sandbox: staging %s for the child: %w", path, err)
		}
	}
	return staged, func() { _ = os.Remove(staged) }, nil
}

// copyFile copies src to a new file dst, readable by everyone (the
// child's user may differ) and writable by no one.
func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(dst)
		}
	}()
	_, err = io.Copy(out, in) // copy_file_range where the kernel can
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}
