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
//	POST, body slower than the limit 408, connection closed (WithReadTimeout)
//	POST, every read slot taken      503 with Retry-After, connection closed, body unread
//	      (WithReadLimit)
//	POST, ping (body may be empty)   200 {"status":"OK"}
//	POST, another event              400
//	POST, malformed bounty           400 (the error names the field; a sha256 that is
//	                                      not one is ignored with a logged warning)
//	POST, bounty                     202 {"status":"ACCEPTED"}  (queued; scanned afterwards)
//	POST, repeated delivery id       200 {"status":"DUPLICATE"} (not queued again)
//	POST, queue full or engine shut  503 {"status":"UNAVAILABLE",...} with Retry-After
//	POST, copy of a delivery being   503 with Retry-After (never acknowledged before the
//	      queued at this very moment      first copy is actually queued)
//	other methods                    405
//
// The signature is checked, in constant time, over the body exactly as
// received and before any JSON is read: an unsigned or wrongly signed request
// never reaches the parser, the dedupe memory or the engine. Before it is
// authenticated, a request is bounded: at most WithReadLimit bodies are read
// at once (others wait briefly, then get 503), each within WithReadTimeout,
// so a flood of slow or large unsigned POSTs holds a bounded number of
// goroutines and of body buffers (the host sets its server's
// ReadHeaderTimeout for the headers before them). A handler
// without a secret refuses to be built (ErrNoSecret) unless the host opts
// into WithInsecure, which logs a warning.
//
// A bounty is handed to a Submitter (a *psengine.Engine, or anything with
// its SubmitJob method) and answered at once; the scan, the delivery of the
// answer to the bounty's response_url (package deliver, retried with
// backoff until the bounty expires) and the hooks then run in the engine.
// The job's ID is the delivery id when there is one (else the bounty's id
// and phase, as "ID/phase", so an arbitration is not taken for a repeat of
// its assertion), so the broker's own deduplication also applies, and the
// handler remembers the delivery ids it
// accepted for a window (WithDedupe: by default an hour, at most 100,000 ids)
// so that a repeated delivery is acknowledged without a second scan or
// answer.
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
