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
// Updater (new definitions, swapped in atomically), SelfTester (checks new
// definitions before they serve), Releaser (frees definitions no scan uses
// any more), HealthChecker (readiness, Engine.Ready), EngineTeardown, and
// the hooks SuccessHook and ErrorHook.
//
// # Telemetry
//
// The engine speaks OpenTelemetry through its API only: a span per bounty
// with a child span per stage, and the metrics listed with
// WithMeterProvider. Nothing is recorded unless the host configures
// providers (WithMeterProvider, WithTracerProvider, or the globals).
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
// Each bounty goes through a fixed list of named steps, each a
// pipeline.Stage over the bounty's task and a thin adapter over a plain
// function that a test or a debugger can call alone: fetch (the fetch
// Policy's Fetch: size cap, sha256 in the same pass, temp files under TMPDIR
// named with TMPPREFIX, always removed) -> identify (NewArtifact: the
// mimetype) -> accept (the Acceptor) -> scan (the Scanner) -> bid (the
// BidStrategy, package bid) -> enrich (the head's metadata under the
// analysis) -> validate (Validate: what PolySwarm would refuse becomes an
// error, not a 400) -> deliver (the Deliverer; by default package
// deliver's POST, retried until the expiration) -> the hooks. Options
// replace a step's function (see Extending).
//
// A scan runs on a goroutine of its own, so that a panic or a
// runtime.Goexit in it is a failed scan (unknown answer, *PanicError or
// pipeline.ErrGoexit to the hooks) and never ends the worker. A scanner
// must honour its ctx, which ends at the deadline (the bounty's expiration
// less the delivery margin, and WithTimeout; ctx.Err() is
// context.DeadlineExceeded and context.Cause is ErrTimeout, for contexts
// derived from it too), when the caller gives up, or when Shutdown does. A
// scan that has not returned ScanGrace after that is walked away from: its
// bounty is answered unknown (ErrTimeout), delivered and reported to the
// hooks, and its worker goes on with the next bounty and a fresh worker Env
// while the hung scan finishes alone (then tears its worker Env down).
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
// queue; see package broker and psenginetest.TestBroker), OnSuccess and OnError.
package psengine
