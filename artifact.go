package psengine

import (
	"errors"
	"io"
	"os"

	"github.com/gabriel-vasile/mimetype"
	"github.com/polyswarm/psengine/fetch"
)

// DefaultBytesLimit bounds Artifact.Bytes: a scanner that needs more reads
// the artifact as a stream (Open) or a file (Path).
const DefaultBytesLimit = 64 << 20

// URIListType is the mimetype of a URL artifact's content.
const URIListType = "text/uri-list"

var errNoContent = errors.New("psengine: artifact has no content")

// Artifact is what a scanner reads: the content of a bounty's artifact with
// its type, sha256, size and detected mimetype. It can be read as a stream
// (Open, any number of times), as bounded bytes (Bytes) or as a real file
// (Path) for command-line scanners.
//
// An Artifact is a value: copies share the same content, which the engine
// owns and releases after the scan. Scanners never close it.
type Artifact struct {
	Type     ArtifactType
	URI      string // the artifact URI of the bounty (for a URL artifact, the URL to scan)
	SHA256   string // lowercase hex of the content
	Size     int64
	MIMEType string // detected from the content (text/uri-list for URL artifacts)

	content *fetch.Content
}

// NewArtifact wraps fetched content. The mimetype is detected from the
// content's first bytes (URL artifacts are text/uri-list).
func NewArtifact(t ArtifactType, uri string, c *fetch.Content) Artifact {
	a := Artifact{Type: t, URI: uri, SHA256: c.SHA256(), Size: c.Size(), content: c}
	if t == URLArtifact {
		a.MIMEType = URIListType
	} else {
		a.MIMEType = DetectMIMEType(c.Head())
	}
	return a
}

// DetectMIMEType names the type of content from its first bytes (4 KiB are
// enough). Empty content is text/plain.
func DetectMIMEType(head []byte) string {
	return mimetype.Detect(head).String()
}

// ArtifactFromBytes returns a file artifact holding b, as a test or a
// debugger session needs to call a scan function with nothing else set up.
// Close it when done if Path was called (it removes the temp file).
func ArtifactFromBytes(b []byte) Artifact {
	return NewArtifact(FileArtifact, "", fetch.FromBytes(b))
}

// ArtifactFromURL returns a URL artifact for u (its content is the URL text).
func ArtifactFromURL(u string) Artifact {
	return NewArtifact(URLArtifact, u, fetch.FromBytes([]byte(u)))
}

// Open returns a reader over the whole content, from the start. Each call
// gives an independent reader; the caller closes it.
func (a Artifact) Open() (io.ReadCloser, error) {
	if a.content == nil {
		return nil, errNoContent
	}
	return a.content.Open()
}

// Bytes returns the whole content when it is at most DefaultBytesLimit
// bytes, else an error wrapping fetch.ErrTooLarge. The slice may be the
// artifact's own (content held in memory is not copied): do not modify it;
// bytes.Clone it first to change it.
func (a Artifact) Bytes() ([]byte, error) { return a.BytesMax(DefaultBytesLimit) }

// BytesMax is Bytes for content of at most max bytes. Do not modify the
// slice.
func (a Artifact) BytesMax(max int64) ([]byte, error) {
	if a.content == nil {
		return nil, errNoContent
	}
	return a.content.View(max)
}

// Head returns the first bytes of the content (up to 4 KiB). Do not modify them.
func (a Artifact) Head() []byte {
	if a.content == nil {
		return nil
	}
	return a.content.Head()
}

// Path returns the path of a real file holding the content, for programs
// that scan files: the local file itself when the artifact is one, else a
// temporary file (mode 0600, under TMPDIR, named with TMPPREFIX) written on
// first use and removed when the engine is done with the artifact.
func (a Artifact) Path() (string, error) {
	if a.content == nil {
		return "", errNoContent
	}
	return a.content.Path()
}

// File returns the path of a real file that already holds the content (the
// local file the artifact was fetched from, or the temp file it spilled to)
// without writing one: ok is false for content held only in memory, for
// which Path would write a temp file. Scanners that can take the content in
// another form (a stream, a memory file) use it to choose. The file belongs
// to the artifact: do not modify or remove it.
func (a Artifact) File() (path string, ok bool) {
	if a.content == nil {
		return "", false
	}
	return a.content.File()
}

// OpenFile opens, for reading, the real file that already holds the
// content (see File), for scanners that hand a descriptor to another
// process: the local file, checked unchanged since it was hashed (the file
// returned is the one checked), or the temp file the content spilled to.
// The caller closes it. It returns an error wrapping fetch.ErrNoFile for
// content held only in memory, fetch.ErrChanged for a local file modified
// since it was hashed.
func (a Artifact) OpenFile() (*os.File, error) {
	if a.content == nil {
		return nil, errNoContent
	}
	return a.content.OpenFile()
}

// Close releases the content (removes temporary files). The engine calls it
// for the artifacts it fetched; call it for the ones you made yourself.
func (a Artifact) Close() error {
	if a.content == nil {
		return nil
	}
	return a.content.Close()
}
