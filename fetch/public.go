package fetch

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// PublicAddress reports whether a is an address a bounty from the network
// may make us connect to: not loopback, private (RFC 1918, RFC 4193),
// shared (RFC 6598, 100.64.0.0/10), link-local (169.254.0.0/16, where cloud
// metadata services listen, and fe80::/10), unspecified or multicast.
// IPv4-mapped IPv6 addresses are judged as IPv4.
func PublicAddress(a netip.Addr) bool {
	a = a.Unmap()
	switch {
	case !a.IsValid(), a.IsLoopback(), a.IsPrivate(), a.IsUnspecified(),
		a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast(), a.IsMulticast():
		return false
	case a.Is4() && sharedAddressSpace.Contains(a):
		return false
	}
	return true
}

var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

// PublicOnlyControl is a net.Dialer Control function that refuses to
// connect to an address PublicAddress rejects, with an error wrapping
// ErrNotAllowed. It judges the address actually dialled, so neither a DNS
// answer nor a redirect gets around it. Hosts with their own http.Client
// set it on their Transport's dialer to get what Policy.PublicOnly gives
// the default client.
func PublicOnlyControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot judge address %q: %w", ErrNotAllowed, address, err)
	}
	if !PublicAddress(ap.Addr()) {
		return fmt.Errorf("%w: %s is not a public address", ErrNotAllowed, ap.Addr())
	}
	return nil
}

// publicClient is the default client with PublicOnlyControl on its dialer.
var publicClient = sync.OnceValue(func() *http.Client {
	t := defaultClient().Transport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: PublicOnlyControl}).DialContext
	t.Proxy = nil // a proxy would dial on our behalf, unchecked
	return &http.Client{Transport: t}
})
