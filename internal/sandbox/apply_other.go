//go:build !linux

package sandbox

import (
	"errors"
	"os"
)

// Apply enforces nothing outside Linux: the Report says so.
func Apply(p Policy) (Report, error) {
	return Report{Limits: p.Limits.withDefaults(), UID: os.Getuid(), GID: os.Getgid(),
		Missing: []string{"the sandbox is Linux only: nothing is enforced on this platform"}}, nil
}

// PidsGroup is a child's pids cgroup; Linux only.
type PidsGroup struct{ Dir string }

// NewPidsGroup fails outside Linux.
func NewPidsGroup(uint64) (*PidsGroup, error) {
	return nil, errors.New("pids cgroup: Linux only")
}

// Add does nothing outside Linux.
func (g *PidsGroup) Add(int) error { return nil }

// Remove does nothing outside Linux.
func (g *PidsGroup) Remove() error { return nil }
