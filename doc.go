// Package psengine lets the author of a malware scanner answer PolySwarm
// bounties by writing one scan function. Everything around the scan is the
// library's: fetching the artifact, identifying it, running the scan with a
// deadline, turning verdict and confidence into a bid, stamping engine
// metadata, validating the answer, delivering it, hooks, and workers.
//
// # Writing a scanner
//
// A Scanner has one method, and ScannerFunc adapts a plain function:
//
//	func scan(ctx context.Context, env psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
//		head, _ := a.BytesMax(128)
//		if bytes.Contains(head, marker) {
//			return psengine.Analysis{Verdict: psengine.Malicious, Confidence: 0.95,
//				Metadata: psengine.Metadata{MalwareFamily: "Marker"}}, nil
//		}
//		return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.5}, nil
//	}
//
// The scan function is pure and callable as it is: a test or a debugger
// session passes a zero Env and psengine.ArtifactFromBytes(data), with
// nothing else set up. An Artifact is read as a stream (Open), as bounded
// bytes (Bytes), or as a real file (Path) for command-line scanners.
//
// Anything else is optional, one small interface each, found by type
// assertion: EngineSetup (once per engine; may store read-only values in the
// Env under typed keys, see Key), WorkerSetup and WorkerTeardown (once per
// worker: state no other worker sees, such as a connection), Describer (the
// engine's head: product and versions, gathered once), Acceptor (which
// artifacts it handles), Commander (functions exposed to the host),
// Updater (new definitions, swapped in atomically), EngineTeardown, and the
// hooks SuccessHook and ErrorHook.
//
// # Running an engine
//
//	engine := psengine.New(psengine.ScannerFunc(scan), psengine.WithWorkers(8))
//	res, err := engine.Analyze(ctx, "file:///tmp/sample")
//
// Analyze answers a local input (a path, "-" for stdin, a file://, data: or
// http(s) URI); AnalyzeBounty answers a Bounty (from ParseBounty); the
// batch forms AnalyzeAll, AnalyzeEach and AnalyzeBounties keep input order.
// Submit queues a bounty and returns at once: the scan, the delivery of the
// answer to the bounty's response URL and the hooks run by themselves.
// Shutdown drains the queue and runs the teardowns.
//
// # The pipeline
//
// Each bounty goes through small stages (package pipeline's Stage[In,Out]):
// fetch (package fetch: size cap, sha256 in the same pass, temp files under
// TMPDIR named with TMPPREFIX, always removed) -> identify (mimetype) ->
// accept -> scan (deadline: the bounty's expiration less a delivery margin;
// panics recovered as *PanicError) -> bid (package bid) -> enrich (the
// head's metadata under the analysis) -> validate (what PolySwarm would
// refuse becomes an error, not a 400) -> deliver (package deliver:
// retries until the expiration).
//
// A scan runs on the goroutine of the worker that took its bounty, as a
// net/http handler runs on its connection's: a scanner must honour its ctx,
// which ends at the deadline (ctx.Err() is context.DeadlineExceeded,
// context.Cause is ErrTimeout) or when Shutdown gives up. A scan that does
// not return ScanGrace after that is settled without it: its bounty is
// answered unknown, delivered and reported to the hooks at once, and its
// worker stays busy until it returns. WithScanIsolation runs each scan on a
// goroutine apart instead, walked away from at its deadline, for a few
// microseconds more per bounty.
//
// A bounty that cannot be scanned is still answered: a fetch failure with
// CannotFetch, an unsupported artifact with Unsupported, a scan error, a
// timeout or an invalid analysis with an unknown verdict. The failure is
// also reported to the error hooks as a typed error: errors.Is(err,
// psengine.ErrFetch), errors.As(err, &tooLarge). A bounty already expired
// when its scan would start is discarded (WithDiscardExpired).
//
// # Extending
//
// Options replace one stage or wrap the scanner without reimplementing the
// rest: WithFetchPolicy (what bounties may reference, custom schemes),
// WithBidStrategy, WithDeliverer, WithMiddleware, WithBroker (a distributed
// queue; see Broker and psenginetest.TestBroker), OnSuccess and OnError.
package psengine
