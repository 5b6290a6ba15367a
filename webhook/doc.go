// Package webhook is PolySwarm's webhook intake for a psengine engine: an
// http.Handler that the host mounts on its own server (the package owns no
// port and no listener).
//
// # Intake
//
// PolySwarm POSTs each bounty as JSON with three headers: X-POLYSWARM-EVENT
// (bounty or ping), X-POLYSWARM-SIGNATURE (the lowercase hex HMAC-SHA256 of
// the raw body, keyed with the webhook secret) and X-POLYSWARM-DELIVERY (a
// unique delivery id). The Handler answers:
//
//	GET or HEAD                      200 {"status":"OK"}        (liveness, on every path
//	                                      where a POST is taken: the registered URL's
//	                                      path, which load balancers probe)
//	POST, no signature               400 {"status":"REJECTED","error":...}
//	POST, signature does not match   401
//	POST, body over the cap          413 (WithMaxBody; the body is not read past it)
//	POST, body too slow              408, connection closed (WithMinBodyRate, WithReadTimeout)
//	POST, every read slot taken, or  503 with Retry-After, connection closed, body unread
//	      every one of its source's       (WithReadLimit, WithReadLimitPerSource)
//	POST, ping (body may be empty)   200 {"status":"OK"}
//	POST, another event              400
//	POST, malformed bounty           400 (the error names the field; a sha256 that is
//	                                      not one is ignored with a logged warning)
//	POST, bounty                     202 {"status":"ACCEPTED"}  (queued; scanned afterwards)
//	POST, bounty already expired     422 {"status":"EXPIRED",...} (not queued: an answer would not count)
//	POST, repeated delivery id or    200 {"status":"DUPLICATE"} (not queued again)
//	      the same bounty replayed
//	POST, queue full or engine shut  503 {"status":"UNAVAILABLE",...} with Retry-After
//	other methods                    405
//
// The signature is checked, in constant time, over the body exactly as
// received and before any JSON is read: an unsigned or wrongly signed request
// never reaches the parser or the engine.
//
// # Before authentication
//
// The signature covers the body, so a request must be read before it can
// be judged, and any client can send a signature header. Reading is
// bounded so that slow or large unsigned POSTs can neither exhaust memory
// nor starve signed bounties:
//
//   - at most WithReadLimit bodies (256) are read at once, at most
//     WithMaxBody bytes each (256 KiB): 64 MiB at most in body buffers;
//   - at most WithReadLimitPerSource of them (8) come from one source (an
//     IPv4 address, an IPv6 /64): one host holding its slots with bodies it
//     never finishes delays only its own requests, and signed bounties from
//     PolySwarm's addresses are read at once;
//   - a request that finds no slot waits WithReadLimit's wait (100 ms), then
//     gets 503 with Retry-After and its connection closed, its body unread;
//   - a body must arrive at WithMinBodyRate on average (16 KiB/s) once its
//     grace has passed (2 s), and whole within WithReadTimeout (10 s), else
//     408 and the connection closed: past the grace, a slot is held only
//     by sending.
//
// So 64 slow clients on one host, each with a signature header and a body
// trickled byte by byte, hold 8 slots, and signed bounties from elsewhere
// are answered 202 in a millisecond or two.
// Hosts enough to take every slot (32 with the defaults, each keeping 8
// slow bodies going) make every sender wait, but hold no more memory than
// the bound; behind a reverse proxy, every request shares the proxy's
// address (see WithReadLimitPerSource). The host sets its server's
// ReadHeaderTimeout for the headers that come first. Strings a request
// chooses (ids, the reasons quoting them) are cut to a few hundred bytes
// in log records.
//
// A handler without a secret refuses to be built (ErrNoSecret) unless the
// host opts into WithInsecure, which logs a warning.
//
// # Queueing
//
// A bounty is handed to a Submitter (a *psengine.Engine, or anything with
// its SubmitJob method) and answered at once; the scan, the delivery of the
// answer to the bounty's response_url (package deliver, retried with
// backoff until the bounty expires) and the hooks then run in the engine.
// The job's ID is the delivery id when there is one (else the bounty's id
// and phase, as "ID/phase", so an arbitration is not taken for a repeat of
// its assertion). The Submitter validates the bounty and makes its job
// (broker.NewJob), once; the broker behind it is the one memory of what
// was taken: a repeated delivery id, or the same signed body replayed under
// a new one (same broker.BountyKey), is refused with
// psengine.ErrDuplicate and acknowledged 200 DUPLICATE, without a second
// scan or answer.
//
// # What a bounty may reference
//
// What a network bounty may reference is the engine's fetch policy
// (psengine.WithFetchPolicy): by default fetch.Remote(), which allows http,
// https and data: artifacts only. A file:// artifact is then refused and the
// bounty is answered unknown with SKIPPED:CANNOT-FETCH.
//
// # Shutdown
//
// The host stops its http.Server (no new requests) and then calls
// Engine.Shutdown, which drains the queue; a request that still reaches the
// handler once the engine is shut down is answered 503, so PolySwarm retries
// it elsewhere or later.
package webhook
