//go:build !linux

package sandbox

import "os"

// Apply enforces nothing outside Linux: the Report says so.
func Apply(p Policy) (Report, error) {
	return Report{Limits: p.Limits.withDefaults(), UID: os.Getuid(), GID: os.Getgid(),
		Missing: []string{"the sandbox is Linux only: nothing is enforced on this platform"}}, nil
}
