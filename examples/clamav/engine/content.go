package engine

import (
	"errors"
	"os"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/fetch"
)

// ArtifactContent is the content of an artifact as a scan sends it: its
// stream (INSTREAM), and an open file for descriptor passing (FILDES): the
// artifact's real file when it has one (a local file, or the temp file
// content too large for memory was spilled to), else, for content held only
// in memory, a memory file (memfd on Linux: measured several times cheaper
// than writing a temp file; elsewhere the artifact's temp file, Path).
func ArtifactContent(a psengine.Artifact) Content {
	return Content{Open: a.Open, File: func() (*os.File, error) { return artifactFile(a) }}
}

func artifactFile(a psengine.Artifact) (*os.File, error) {
	f, err := a.OpenFile() // a local file is checked unchanged
	if errors.Is(err, fetch.ErrNoFile) {
		return memoryFile(a)
	}
	return f, err
}

// pathFile opens the artifact's real file, written first to a temp file
// (under TMPDIR, named with TMPPREFIX, removed with the artifact) when it
// has none.
func pathFile(a psengine.Artifact) (*os.File, error) {
	p, err := a.Path()
	if err != nil {
		return nil, err
	}
	return os.Open(p)
}
