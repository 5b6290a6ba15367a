// Package fetch turns an artifact URI into content a malware scanner can
// read: as a stream, as bytes, or as a file path for command-line scanners.
//
// # Sources
//
// Fetch understands file: URIs and plain paths, "-" for stdin, data: URIs
// (RFC 2397, see ParseDataURI), http: and https:, plus custom schemes the
// host registers as an Opener (an object store on another machine, say). A
// Policy says which of them may be used: Local for the host's own inputs,
// Remote for URIs that arrive from the network (no local files, no stdin).
//
// # One pass, bounded memory
//
// Content is read exactly once. In that single pass Fetch computes the
// SHA-256, enforces Policy.MaxSize (stopping one byte past the cap, never
// buffering beyond it), keeps the first HeadSize bytes for type detection,
// and holds the bytes in memory up to Policy.MemoryLimit or spills them to a
// temp file (mode 0600, under Policy.TempDir, named with Policy.TempPrefix).
// A local regular file is never copied to disk: it is hashed in place and
// Content.Path returns it, after checking it has not changed (ErrChanged). A
// file of at most Policy.MemoryLimit is read into memory in that same pass
// and its bytes are served from there; a larger one is read again from disk,
// with the same check.
//
// # Lifetime
//
// A Content is immutable and safe for concurrent use. Close removes its temp
// files; call it when done, typically with defer right after Fetch. On any
// error Fetch leaves nothing behind. Temp file names carry the creating
// process's ID, so that the files a crashed process left can be told from
// those of live ones: RemoveStale, which the engine calls at Start, removes
// the former.
//
// # Errors
//
// Every error matches one sentinel with errors.Is (ErrNotAllowed,
// ErrMalformedURI, ErrUnreachable, ErrTooLarge, ErrChecksum, ErrChanged,
// ErrClosed, ErrBadPolicy), or ctx.Err() for a cancelled fetch. Typed errors
// carry details: *TooLargeError, *StatusError (a non-2xx HTTP response,
// which also matches ErrUnreachable) and *ChecksumError. Messages are one
// line, never echo a data: payload, and omit URL queries and credentials.
package fetch
