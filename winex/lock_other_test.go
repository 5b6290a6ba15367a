//go:build !unix

package winex_test

// lockPrefix does nothing where flock is missing: setupWine does not use
// Wine there.
func lockPrefix(dir string) (unlock func() error, err error) {
	return func() error { return nil }, nil
}
