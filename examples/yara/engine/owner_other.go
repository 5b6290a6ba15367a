//go:build !unix

package engine

// fileOwner is "" where files have no unix owner.
func fileOwner(string) string { return "" }
