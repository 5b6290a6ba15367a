package psengine

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/polyswarm/psengine/bid"
	"github.com/polyswarm/psengine/broker"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/fetch"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// An Option configures an Engine. Options print readably (%v).
type Option interface {
	apply(*config)
	String() string
}

type option struct {
	name string
	fn   func(*config)
}

func (o option) apply(c *config) { o.fn(c) }
func (o option) String() string  { return o.name }

func opt(name string, fn func(*config)) Option { return option{name: name, fn: fn} }

// BidStrategy turns a scanner's analysis into a bid within rules. It is
// called for malicious and benign assertions whose scanner left Bid at 0.
type BidStrategy func(rules bid.Rules, a Analysis) int64

// LinearBid is the default strategy. It uses the first of a's measures that
// is set, exactly as written (see [bid.Linear]):
//   - Confidence, if not 0: Min + Confidence x (Max - Min) ([bid.Linear]);
//   - else Score, if not 0: Min + Score/100 x (Max - Min) ([bid.FromScore]);
//   - else Likelihood, if not NotSpecified: FromScore of its 0-100 score
//     ([bid.FromLikelihood]; Likely bids exactly 70% of the span);
//   - else the minimum.
//
// Within the default rules, a Confidence of 0.95, a Score of 95 and
// AlmostCertain all bid exactly 953125000000000000 wei.
func LinearBid(rules bid.Rules, a Analysis) int64 {
	switch {
	case a.Confidence != 0:
		return bid.Linear(rules, a.Confidence)
	case a.Score != 0:
		return bid.FromScore(rules, a.Score)
	}
	return bid.FromLikelihood(rules, a.Likelihood, 0)
}

// Deliverer sends an answer to a bounty's response URL. It may retry, and
// must return by ctx's deadline. An error wrapping ErrPermanent means
// retrying cannot help.
type Deliverer interface {
	Deliver(ctx context.Context, b Bounty, answer Answer) error
}

// DelivererFunc adapts a function to Deliverer.
type DelivererFunc func(ctx context.Context, b Bounty, answer Answer) error

// Deliver calls f.
func (f DelivererFunc) Deliver(ctx context.Context, b Bounty, answer Answer) error {
	return f(ctx, b, answer)
}

type config struct {
	name           string
	workers        int
	inFlight       int
	fetchers       int
	deliveryWindow time.Duration
	logger         *slog.Logger
	onSuccess      []func(context.Context, Result)
	onError        []func(context.Context, Result)
	timeout        time.Duration
	margin         time.Duration
	localTTL       time.Duration
	bidder         BidStrategy
	policy         fetch.Policy
	localPolicy    fetch.Policy
	middleware     []Middleware
	meta           Metadata
	broker         broker.Broker
	deliverer      Deliverer
	discardExpired bool
	discardSet     bool // WithDiscardExpired was given: the environment does not override it
	dirs           *envdirs.Dirs
	getenv         func(string) string
	process        *ProcessConfig // WithProcessWorkers
	window         time.Duration  // WithDefaultWindow
	meters         metric.MeterProvider
	tracers        trace.TracerProvider
	cache          ResultCache // WithResultCache (cache.go)
	selfTests      []SelfTest  // WithSelfTest (selftest.go)
}

// WithName names the engine (used for its base directories, logs, and as
// the default product name).
func WithName(name string) Option {
	return opt(fmt.Sprintf("WithName(%q)", name), func(c *config) { c.name = name })
}

// WithWorkers sets how many bounties are scanned at once (default 1): a
// worker is held for a scan only, never through a fetch or a delivery (see
// WithInFlight). Each worker has its own Env from WorkerSetup. n < 1 panics.
func WithWorkers(n int) Option {
	if n < 1 {
		panic(fmt.Sprintf("psengine: WithWorkers(%d): need at least 1", n))
	}
	return opt(fmt.Sprintf("WithWorkers(%d)", n), func(c *config) { c.workers = n })
}

// Defaults of the concurrency and delivery options.
const (
	// DefaultInFlight is WithInFlight's default: enough bounties in
	// progress to keep scans busy while hundreds of answers wait on slow
	// receivers.
	DefaultInFlight = 256
	// DefaultFetchers is WithFetchers' default.
	DefaultFetchers = 32
	// DefaultDeliveryWindow is WithDeliveryWindow's default.
	DefaultDeliveryWindow = 5 * time.Minute
)

// WithInFlight bounds how many bounties the engine holds at once between
// their first stage and their last: fetching, waiting for a worker,
// scanning, delivering (default DefaultInFlight). It is the number of
// consumers on a broker (the engine's own, or Serve's) and the concurrency
// of AnalyzeEach. Workers (WithWorkers) bound the scans among them: an
// answer waiting on a slow receiver holds no worker. n < 1 panics.
func WithInFlight(n int) Option {
	if n < 1 {
		panic(fmt.Sprintf("psengine: WithInFlight(%d): need at least 1", n))
	}
	return opt(fmt.Sprintf("WithInFlight(%d)", n), func(c *config) { c.inFlight = n })
}

// WithFetchers bounds how many artifacts are fetched at once (default
// DefaultFetchers). n < 1 panics.
func WithFetchers(n int) Option {
	if n < 1 {
		panic(fmt.Sprintf("psengine: WithFetchers(%d): need at least 1", n))
	}
	return opt(fmt.Sprintf("WithFetchers(%d)", n), func(c *config) { c.fetchers = n })
}

// WithDeliveryWindow bounds how long an answer is retried after intake
// accepted its bounty (broker.Job.Accepted; for AnalyzeBounty, the call), when the
// bounty's expiration does not end it sooner: an expiration decades ahead
// is no reason to retry forever (default DefaultDeliveryWindow). A delivery
// given up is reported to the error hooks (ErrDeliver). d <= 0 panics.
func WithDeliveryWindow(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("psengine: WithDeliveryWindow(%v): need a positive duration", d))
	}
	return opt(fmt.Sprintf("WithDeliveryWindow(%v)", d), func(c *config) { c.deliveryWindow = d })
}

// WithLogger sets the logger of the engine and of the scanner's Env
// (default: discard).
func WithLogger(l *slog.Logger) Option {
	return opt("WithLogger(...)", func(c *config) { c.logger = l })
}

// OnSuccess adds a host hook called with the Result of each bounty answered
// with the scanner's own analysis (and delivered, when it has a response
// URL). Hooks run in the worker, after the scanner's own (SuccessHook); a
// panicking hook is recovered and logged.
func OnSuccess(fn func(ctx context.Context, res Result)) Option {
	return opt("OnSuccess(...)", func(c *config) { c.onSuccess = append(c.onSuccess, fn) })
}

// OnError adds a host hook called with the Result of each bounty that
// failed somewhere (see ErrorHook): res.Err is a typed error, and
// res.Answered says whether a special result was given.
func OnError(fn func(ctx context.Context, res Result)) Option {
	return opt("OnError(...)", func(c *config) { c.onError = append(c.onError, fn) })
}

// WithTimeout bounds each bounty's fetch and scan (default: none beyond the
// bounty's expiration). d <= 0 panics.
func WithTimeout(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("psengine: WithTimeout(%v): need a positive duration", d))
	}
	return opt(fmt.Sprintf("WithTimeout(%v)", d), func(c *config) { c.timeout = d })
}

// WithDeliveryMargin sets how long before a bounty's expiration its scan
// must end, to leave time to deliver the answer (default 5s).
func WithDeliveryMargin(d time.Duration) Option {
	if d < 0 {
		panic(fmt.Sprintf("psengine: WithDeliveryMargin(%v): negative", d))
	}
	return opt(fmt.Sprintf("WithDeliveryMargin(%v)", d), func(c *config) { c.margin = d })
}

// WithMeterProvider sets where the engine's metrics go (default: the global
// MeterProvider of go.opentelemetry.io/otel). See the package
// documentation's Telemetry section for the instruments.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return opt("WithMeterProvider(...)", func(c *config) { c.meters = mp })
}

// WithTracerProvider sets where the engine's spans go (default: the global
// TracerProvider of go.opentelemetry.io/otel): a span per bounty, with a
// child span per step.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return opt("WithTracerProvider(...)", func(c *config) { c.tracers = tp })
}

// WithDefaultWindow sets how long a bounty without a usable expiration
// (missing, empty or unparseable on the wire) has to be answered, from when
// the engine takes it (Submit, AnalyzeBounty): its expiration is set then,
// and logged (default DefaultLocalTTL, 5 minutes). d <= 0 panics.
func WithDefaultWindow(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("psengine: WithDefaultWindow(%v): need a positive duration", d))
	}
	return opt(fmt.Sprintf("WithDefaultWindow(%v)", d), func(c *config) { c.window = d })
}

// WithLocalTTL sets how far ahead the expiration of a local bounty (made by
// Analyze from a path, stdin or URI) is (default 5 minutes).
func WithLocalTTL(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("psengine: WithLocalTTL(%v): need a positive duration", d))
	}
	return opt(fmt.Sprintf("WithLocalTTL(%v)", d), func(c *config) { c.localTTL = d })
}

// WithBidStrategy replaces the bid stage's strategy (default LinearBid).
func WithBidStrategy(s BidStrategy) Option {
	return opt("WithBidStrategy(...)", func(c *config) { c.bidder = s })
}

// WithFetchPolicy sets what bounties (AnalyzeBounty, Submit) may reference
// and how they are fetched (default fetch.Remote(): http, https and data
// only). Analyze, for the host's own inputs, uses fetch.Local() with the
// same limits, temp settings, client and custom schemes.
func WithFetchPolicy(p fetch.Policy) Option {
	return opt(fmt.Sprintf("WithFetchPolicy(allow=%v)", p.Allow), func(c *config) { c.policy = p })
}

// WithMiddleware wraps the scanner; the first middleware is the outermost.
func WithMiddleware(m ...Middleware) Option {
	return opt(fmt.Sprintf("WithMiddleware(%d)", len(m)), func(c *config) { c.middleware = append(c.middleware, m...) })
}

// WithMetadata sets engine-level metadata that wins over the scanner's head
// (Describer) and is merged under every analysis: product, versions,
// environment, extra keys.
func WithMetadata(m Metadata) Option {
	return opt("WithMetadata(...)", func(c *config) { c.meta = m.Merge(c.meta) })
}

// WithProduct sets metadata.product (normalised with ProductName).
func WithProduct(name string) Option {
	return opt(fmt.Sprintf("WithProduct(%q)", name), func(c *config) { c.meta.Product = ProductName(name) })
}

// WithEnvironment sets metadata.scanner.environment (default: this machine,
// or PSENGINE_METADATA_OS and PSENGINE_METADATA_ARCHITECTURE).
func WithEnvironment(os, arch string) Option {
	return opt(fmt.Sprintf("WithEnvironment(%q, %q)", os, arch), func(c *config) {
		c.meta.Scanner.Environment = Environment{OperatingSystem: os, Architecture: arch}
	})
}

// WithBroker sets the queue behind Submit and Serve (default: an in-process
// broker.Memory whose workers the engine runs itself).
func WithBroker(b broker.Broker) Option {
	return opt("WithBroker(...)", func(c *config) { c.broker = b })
}

// WithDeliverer replaces answer delivery (default: an HTTP POST to the
// response URL, retried on transient failures until the expiration).
func WithDeliverer(d Deliverer) Option {
	return opt("WithDeliverer(...)", func(c *config) { c.deliverer = d })
}

// WithDiscardExpired sets whether a bounty already expired when its scan
// would start is discarded unanswered (default true, or
// PSENGINE_DISCARD_EXPIRED_BOUNTIES).
func WithDiscardExpired(discard bool) Option {
	return opt(fmt.Sprintf("WithDiscardExpired(%v)", discard), func(c *config) { c.discardExpired, c.discardSet = discard, true })
}

// WithDirs sets the engine's base directories instead of resolving them
// from the environment.
func WithDirs(d envdirs.Dirs) Option {
	return opt("WithDirs(...)", func(c *config) { c.dirs = &d })
}

// WithGetenv sets where settings are read from (default os.Getenv); tests
// use it to avoid touching the process environment.
func WithGetenv(getenv func(string) string) Option {
	return opt("WithGetenv(...)", func(c *config) { c.getenv = getenv })
}
