package clamd

import (
	"errors"
	"net"
)

// ErrNoFDPassing reports a FILDES asked on a connection that cannot carry a
// file descriptor: one that is not a unix socket (clamd accepts FILDES on its
// LocalSocket only). The connection stays usable.
var ErrNoFDPassing = errors.New("clamd: file descriptor passing needs a unix socket")

// CanPassFD reports whether the connection is a unix socket, where ScanFD
// works.
func (c *Conn) CanPassFD() bool {
	_, ok := c.nc.(*net.UnixConn)
	return ok
}
