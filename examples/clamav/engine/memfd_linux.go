package engine

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/polyswarm/psengine"
)

// memoryFile returns a memory file (memfd) holding the content of a, or its
// temp file when the kernel refuses memfd_create (too old, or a seccomp
// filter).
func memoryFile(a psengine.Artifact) (*os.File, error) {
	fd, err := unix.MemfdCreate("psengine-artifact", unix.MFD_CLOEXEC)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		return pathFile(a)
	}
	if err != nil {
		return nil, fmt.Errorf("clamav: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:psengine-artifact")
	if err := copyInto(f, a); err != nil {
		f.Close()
		return nil, fmt.Errorf("clamav: writing the artifact into a memory file: %w", err)
	}
	return f, nil
}

// copyInto writes the whole content of a into f, a new empty file.
func copyInto(f *os.File, a psengine.Artifact) error {
	r, err := a.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(f, r) // content in memory writes itself in one write
	return err
}
