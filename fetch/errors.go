package fetch

import (
	"cmp"
	"errors"
	"fmt"
)

// Error kinds. Every error returned by this package matches exactly one of
// these with errors.Is (a cancelled fetch matches context.Canceled or
// context.DeadlineExceeded instead), except that ErrNotPublic refines
// ErrNotAllowed: an error matching it matches ErrNotAllowed too. Where the
// details matter, a typed error carries them: *TooLargeError, *StatusError
// and *ChecksumError.
var (
	// ErrNotAllowed: the URI's scheme is refused by the Policy (or has no
	// source at all), or its address is (ErrNotPublic). The message names
	// the scheme or the address.
	ErrNotAllowed = errors.New("fetch: scheme not allowed")
	// ErrNotPublic: a connection to an address that is not public (see
	// PublicAddress) was refused, by Policy.PublicOnly or PublicOnlyControl.
	// Errors matching it also match ErrNotAllowed; their message says
	// "refused", names the address and says what kind it is.
	ErrNotPublic = errors.New("fetch: refused: not a public address")
	// ErrTooLarge: the content is larger than the limit; see *TooLargeError.
	ErrTooLarge = errors.New("fetch: content too large")
	// ErrUnreachable: the source could not be read: connection or DNS failure,
	// a missing file, an I/O error (including writing a temp file), or a
	// non-2xx HTTP status (see *StatusError).
	ErrUnreachable = errors.New("fetch: source unreachable")
	// ErrChecksum: the content's SHA-256 is not the one expected; see
	// *ChecksumError.
	ErrChecksum = errors.New("fetch: checksum mismatch")
	// ErrMalformedURI: the URI cannot be parsed (a bad data: URI, a file: URI
	// with a host, an empty string...).
	ErrMalformedURI = errors.New("fetch: malformed URI")
	// ErrClosed: the Content was closed; it can no longer be read.
	ErrClosed = errors.New("fetch: content closed")
	// ErrChanged: the local file behind a Content was modified, replaced or
	// truncated after it was hashed, so its bytes may no longer match SHA256.
	ErrChanged = errors.New("fetch: local file changed after it was hashed")
	// ErrNoFile: the content is held only in memory: no real file holds it
	// (see Content.OpenFile; Path writes one).
	ErrNoFile = errors.New("fetch: no file holds the content")
	// ErrBadPolicy: the Policy itself is invalid (a negative limit, an Opener
	// registered for a built-in scheme, ...). A programming error in the host.
	ErrBadPolicy = errors.New("fetch: invalid policy")
)

// TooLargeError reports content over a size limit: Policy.MaxSize during a
// fetch, or the max given to Content.Bytes. It matches ErrTooLarge.
type TooLargeError struct {
	Limit int64 // the limit in bytes
	Size  int64 // the actual size when known (declared or measured), else -1
}

func (e *TooLargeError) Error() string {
	if e.Size >= 0 {
		return fmt.Sprintf("fetch: content too large: %d bytes, over the limit of %s", e.Size, formatBytes(e.Limit))
	}
	return fmt.Sprintf("fetch: content too large: over the limit of %s", formatBytes(e.Limit))
}

// Is reports whether target is ErrTooLarge.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

// StatusError reports an HTTP response whose status is not 2xx. It matches
// ErrUnreachable.
type StatusError struct {
	Code   int    // the HTTP status code, e.g. 404
	Status string // the status line text, e.g. "404 Not Found"
	URL    string // the URL requested, without its query (which may hold credentials)
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("fetch: GET %s: HTTP %s", e.URL, cmp.Or(e.Status, fmt.Sprint(e.Code)))
}

// Is reports whether target is ErrUnreachable.
func (e *StatusError) Is(target error) bool { return target == ErrUnreachable }

// ChecksumError reports content whose SHA-256 differs from the one expected.
// It matches ErrChecksum.
type ChecksumError struct {
	Want string // as given to Fetch
	Got  string // lowercase hex SHA-256 of the content read
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("fetch: checksum mismatch: want sha256 %s, got %s", e.Want, e.Got)
}

// Is reports whether target is ErrChecksum.
func (e *ChecksumError) Is(target error) bool { return target == ErrChecksum }

// formatBytes renders n as exact bytes plus a binary unit when it divides evenly
// enough to be readable: "2147483648 bytes (2 GiB)".
func formatBytes(n int64) string {
	units := []string{"KiB", "MiB", "GiB", "TiB"}
	unit, v := "", float64(n)
	for _, u := range units {
		if v < 1024 {
			break
		}
		v /= 1024
		unit = u
	}
	if unit == "" {
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%d bytes (%.4g %s)", n, v, unit)
}
