//go:build unix

package winetest

import (
	"fmt"
	"os"
	"syscall"
)

// Lock takes an exclusive lock on the directory dir (flock), waiting for
// other holders, and returns the function that releases it.
func Lock(dir string) (unlock func() error, err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	return f.Close, nil // closing the descriptor releases the lock
}
