//go:build !unix

package clamd

import (
	"context"
	"os"
)

// ScanFD needs a unix socket: here it returns ErrNoFDPassing.
func (c *Conn) ScanFD(context.Context, *os.File) (Reply, error) { return Reply{}, ErrNoFDPassing }
