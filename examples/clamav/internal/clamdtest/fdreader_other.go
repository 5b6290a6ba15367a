//go:build !unix

package clamdtest

import (
	"io"
	"net"
	"os"
)

// fdReader is never made here: there is no descriptor passing.
type fdReader struct{ io.Reader }

func newFDReader(net.Conn) *fdReader       { return nil }
func (r *fdReader) take() (*os.File, bool) { return nil, false }
func (r *fdReader) close()                 {}
func readAll(f *os.File) ([]byte, error)   { return io.ReadAll(f) }
