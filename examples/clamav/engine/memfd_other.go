//go:build !linux

package engine

import (
	"os"

	"github.com/polyswarm/psengine"
)

// memoryFile returns the artifact's temp file (there is no memfd here).
func memoryFile(a psengine.Artifact) (*os.File, error) { return pathFile(a) }
