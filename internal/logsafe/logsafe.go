// Package logsafe bounds what an untrusted string (a bounty id, a delivery
// id, a URL, a header value: whatever a request chose) puts in a log
// record, so that one request cannot write megabytes into every line that
// names it.
package logsafe

import (
	"strconv"
	"unicode/utf8"
)

// MaxLen is how many bytes of an untrusted string String keeps: enough for
// any id PolySwarm sends (a UUID is 36) and for most URLs.
const MaxLen = 256

// String returns s when it is at most MaxLen bytes long; else Cut(s, MaxLen).
func String(s string) string { return Cut(s, MaxLen) }

// Cut returns s when it is at most n bytes long; else its first n bytes at
// most, cut on a UTF-8 boundary, followed by "...[N bytes]" where N is the
// length of s: "0123...[524288 bytes]". The result never holds more than n
// bytes of s, so a record shows that s was cut and how long it was. A
// negative n counts as 0. Cut does not allocate when s is short enough.
func Cut(s string, n int) string {
	n = max(n, 0)
	if len(s) <= n {
		return s
	}
	keep := n
	// Back up to the start of a rune: at most utf8.UTFMax-1 bytes, and only
	// over continuation bytes of a rune that starts within s[:n].
	for i := n; i >= 0 && i > n-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			keep = i
			break
		}
	}
	return s[:keep] + "...[" + strconv.Itoa(len(s)) + " bytes]"
}
