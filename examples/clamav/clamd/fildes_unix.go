//go:build unix

package clamd

import (
	"context"
	"fmt"
	"net"
	"os"
	"syscall"
)

// fildes is the FILDES command and the one byte that carries the
// descriptor: clamd reads the descriptor from the ancillary data of the
// message holding at least one byte after the command, and accepts both in
// one message.
const fildes = "zFILDES\x00\x00"

// ScanFD asks clamd to scan the open file f by passing its descriptor over
// the unix socket (FILDES with SCM_RIGHTS): clamd reads the file itself,
// with no copy through the socket and no temp file on its side, whatever
// its StreamMaxLength (its scan limits, MaxFileSize and MaxScanSize, apply
// as to any file). The file may be one clamd could not open by its path
// (another user's, a container's, an unlinked or memory file). f stays the
// caller's: clamd holds its own reference while it scans, and ScanFD does
// not move f's offset, which clamd ignores (it reads from the start).
//
// On a connection that is not a unix socket it returns ErrNoFDPassing
// without using it. Otherwise errors are as for InStream: an ERROR reply is
// returned with a *ReplyError and leaves the connection unusable (dial
// again), as does a failure of the connection (ErrConnection) or the
// context's end.
func (c *Conn) ScanFD(ctx context.Context, f *os.File) (Reply, error) {
	uc, ok := c.nc.(*net.UnixConn)
	if !ok {
		return Reply{}, ErrNoFDPassing
	}
	if err := c.usable(ctx); err != nil {
		return Reply{}, err
	}
	raw, err := f.SyscallConn()
	if err != nil {
		return Reply{}, fmt.Errorf("clamd FILDES: %w", err)
	}
	id := c.next
	c.next++
	stop := c.watch(ctx)
	var werr error
	// Control keeps the descriptor open while the message carrying it is
	// written; once written, clamd's copy is in the socket's queue.
	cerr := raw.Control(func(fd uintptr) {
		_, _, werr = uc.WriteMsgUnix([]byte(fildes), syscall.UnixRights(int(fd)), nil)
	})
	if cerr != nil { // f was closed: nothing was sent
		stop()
		c.next--
		return Reply{}, fmt.Errorf("clamd FILDES: %w", cerr)
	}
	var reply string
	if werr == nil {
		reply, werr = c.readReply()
	}
	cancelled := !stop()
	if werr != nil {
		return Reply{}, c.ioError(ctx, cancelled, "FILDES", werr)
	}
	return c.scanReply(ctx, "FILDES", id, reply, cancelled)
}
