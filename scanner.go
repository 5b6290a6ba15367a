package psengine

import "context"

// Scanner is the one thing an engine author writes: a pure function from an
// artifact to an analysis. Same inputs, same answer; no state kept between
// calls; safe to call from many goroutines at once. It should return when
// ctx is done (the engine answers unknown at the deadline regardless).
//
// Return an error wrapping ErrUnsupported or ErrEncrypted to have the
// bounty answered with the matching special result; any other error is
// answered unknown and reported to the error hooks.
//
// Everything else a scanner may need is optional, one small interface each,
// found by type assertion on the value given to New: EngineSetup,
// WorkerSetup, WorkerTeardown, EngineTeardown, Describer, Acceptor,
// Commander, Updater, SelfTester, Releaser, HealthChecker, CacheKeyer,
// SuccessHook and ErrorHook.
type Scanner interface {
	Scan(ctx context.Context, env Env, a Artifact) (Analysis, error)
}

// ScannerFunc adapts a function to Scanner.
type ScannerFunc func(ctx context.Context, env Env, a Artifact) (Analysis, error)

// Scan calls f.
func (f ScannerFunc) Scan(ctx context.Context, env Env, a Artifact) (Analysis, error) {
	return f(ctx, env, a)
}

var _ Scanner = ScannerFunc(nil)

// EngineSetup runs once per engine, before any scan. It may store read-only
// values for the workers (a loaded rule set, a path) and returns the Env to
// use from then on. An error stops the engine from starting.
type EngineSetup interface {
	SetupEngine(ctx context.Context, env Env) (Env, error)
}

// WorkerSetup runs once per worker, before the worker's first scan, and
// returns the worker's own Env: state no other worker sees, such as a
// connection to a daemon. A worker whose setup fails answers unknown and
// tries again with its next bounty.
type WorkerSetup interface {
	SetupWorker(ctx context.Context, env Env) (Env, error)
}

// WorkerTeardown runs once per worker that was set up, at shutdown, with the
// worker's Env.
type WorkerTeardown interface {
	TeardownWorker(ctx context.Context, env Env) error
}

// EngineTeardown runs once at shutdown, after every worker's teardown.
type EngineTeardown interface {
	TeardownEngine(ctx context.Context, env Env) error
}

// Describer gathers the engine's head once at start: product name, vendor
// and signature versions, anything else engine-wide. It is merged under each
// analysis (the analysis wins on conflicts).
type Describer interface {
	Describe(ctx context.Context, env Env) (Metadata, error)
}

// Acceptor says which artifacts the scanner handles; the others are answered
// UNSUPPORTED without a scan. It must be cheap: it sees the type, size,
// mimetype and Head, and should not read the content.
type Acceptor interface {
	Accepts(a Artifact) bool
}

// Command is an engine function exposed to the host (for example `ENGINE
// commands NAME ARGS`), usable without a bounty.
type Command struct {
	Name string
	Help string
	// Run receives the engine's Env (after setup) and the arguments; its
	// result is printed by hosts as JSON.
	Run func(ctx context.Context, env Env, args []string) (any, error)
}

// Commander exposes commands.
type Commander interface {
	Commands() []Command
}

// Updater refreshes the engine's definitions and returns the new Env: a
// candidate, which the engine describes (Describer) and checks
// (SelfTester) before it swaps it in atomically (scans already running
// keep the old one, released by a Releaser when the last of them ends);
// see Engine.Update.
type Updater interface {
	Update(ctx context.Context, env Env) (Env, error)
}

// SuccessHook is called with the Result of each bounty answered with the
// scanner's own analysis (and delivered, when it has a response URL).
type SuccessHook interface {
	OnSuccess(ctx context.Context, res Result)
}

// ErrorHook is called with the Result of each bounty that failed somewhere
// (fetch, scan, validation, delivery, expiry, shutdown): res.Err is a typed
// error, and the bounty was answered with a special result (res.Answered)
// if it could be.
type ErrorHook interface {
	OnError(ctx context.Context, res Result)
}

// Middleware wraps a Scanner (logging, metrics, caching, a fallback...).
// The optional interfaces are looked up on the original scanner, so a
// middleware need not forward them.
type Middleware func(Scanner) Scanner
