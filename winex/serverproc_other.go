//go:build !linux

package winex

// findServer needs Linux's /proc; elsewhere the server is never found, and
// StartServer waits for a running one as if it were started on demand.
func findServer(string) (ServerInfo, bool) { return ServerInfo{}, false }
