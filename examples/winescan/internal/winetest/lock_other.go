//go:build !unix

package winetest

// Lock does nothing where flock is missing: the Wine tests skip there.
func Lock(dir string) (unlock func() error, err error) { return func() error { return nil }, nil }
