//go:build unix

package winex_test

import (
	"fmt"
	"os"
	"syscall"
)

// lockPrefix takes an exclusive flock on a shared test prefix, so that test
// binaries of other packages using the same prefix (CI exports one in
// PSENGINE_TEST_WINEPREFIX) take turns: each starts and stops its own
// persistent wineserver. The examples/winescan tests lock the same way.
func lockPrefix(dir string) (unlock func() error, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
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
	return f.Close, nil
}
