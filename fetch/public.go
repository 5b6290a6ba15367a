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

// addressKind names the kind of address a, which PublicAddress rejects, is.
func addressKind(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case a.IsLoopback():
		return "a loopback address"
	case a.IsPrivate():
		return "a private address"
	case a.Is4() && sharedAddressSpace.Contains(a):
		return "a shared (carrier-grade NAT) address"
	case a.IsLinkLocalUnicast():
		return "a link-local address"
	case a.IsUnspecified():
		return "the unspecified address"
	case a.IsMulticast(): // link-local and interface-local ones too
		return "a multicast address"
	}
	return "not a public address"
}

// PublicOnlyControl is a net.Dialer Control function that refuses to
// connect to an address PublicAddress rejects, with an error matching
// ErrNotPublic (and so ErrNotAllowed) whose message names the address and
// its kind. It judges the address actually dialled, so neither a DNS
// answer nor a redirect gets around it. Hosts with their own http.Client
// set it on their Transport's dialer to get what Policy.PublicOnly gives
// the default client.
func PublicOnlyControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &notPublicError{addr: address, err: err}
	}
	if !PublicAddress(ap.Addr()) {
		return &notPublicError{addr: ap.Addr().String(), kind: addressKind(ap.Addr())}
	}
	return nil
}

// notPublicError is a connection PublicOnlyControl refused. It matches
// ErrNotPublic and ErrNotAllowed.
type notPublicError struct {
	addr string // the address dialled
	kind string // what kind of address it is ("a loopback address"...)
	err  error  // why it could not be judged, instead
	get  string // "GET url" when known, for Fetch's message
}

func (e *notPublicError) Error() string {
	get := ""
	if e.get != "" {
		get = e.get + ": "
	}
	if e.err != nil {
		return fmt.Sprintf("fetch: refused: %scannot tell whether %q is a public address: %v", get, e.addr, e.err)
	}
	return fmt.Sprintf("fetch: refused: %s%s is not a public address (%s; only public addresses are fetched, see fetch.Policy.PublicOnly)",
		get, e.addr, e.kind)
}

func (e *notPublicError) Is(target error) bool {
	return target == ErrNotPublic || target == ErrNotAllowed
}

// publicClient is the default client with PublicOnlyControl on its dialer.
var publicClient = sync.OnceValue(func() *http.Client {
	t := defaultClient().Transport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: PublicOnlyControl}).DialContext
	t.Proxy = nil // a proxy would dial on our behalf, unchecked
	return &http.Client{Transport: t}
})
