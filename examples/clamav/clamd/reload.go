package clamd

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"time"
)

// Reload asks clamd at addr to reload its signature databases (RELOAD),
// as after new signature files were written into its DatabaseDirectory.
//
// clamd refuses RELOAD inside a session, so Reload uses a connection of its
// own for the one command. clamd answers RELOADING at once and reloads in
// the background (the old databases keep scanning meanwhile); it reports
// neither the end of the reload nor its failure (a database that does not
// load leaves the previous one in use, and a line in clamd's log). Watch
// VERSION for the new database version.
//
// Failures to connect wrap ErrUnreachable, a failure of the connection
// ErrConnection, an unexpected reply ErrProtocol (or a *ReplyError for an
// ERROR reply).
func Reload(ctx context.Context, addr Address) error {
	if addr.Network == "" {
		return fmt.Errorf("%w: empty address", ErrAddress)
	}
	d := net.Dialer{Timeout: DialTimeout}
	nc, err := d.DialContext(ctx, addr.Network, addr.Addr)
	if err != nil {
		return fmt.Errorf("%w at %s: %w", ErrUnreachable, addr, err)
	}
	defer nc.Close()
	// clamd answers at once: a context without a deadline still does not
	// wait for ever.
	_ = nc.SetDeadline(time.Now().Add(DialTimeout))
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c := &Conn{nc: nc, br: bufio.NewReaderSize(nc, 256)} // no session: one command
	_, err = nc.Write([]byte("zRELOAD\x00"))
	var reply string
	if err == nil {
		reply, err = c.readReply()
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("clamd RELOAD: %w", context.Cause(ctx))
	case err != nil:
		return fmt.Errorf("%w: RELOAD: %w", ErrConnection, err)
	case reply == "RELOADING":
		return nil
	}
	rep, perr := ParseReply(reply)
	if perr == nil {
		if rerr := rep.Err("RELOAD"); rerr != nil {
			return rerr
		}
	}
	return fmt.Errorf("%w: RELOAD answered %s", ErrProtocol, quote(reply))
}
