package psengine

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/trace"

	"github.com/polyswarm/psengine/deliver"
	"github.com/polyswarm/psengine/internal/telemetry"
)

// The engine speaks OpenTelemetry through its API only, as it speaks
// log/slog: the host chooses where metrics and traces go. Without
// WithMeterProvider and WithTracerProvider the engine uses the global
// providers of go.opentelemetry.io/otel, which discard everything until the
// host sets real ones.
//
// Metrics (as a Prometheus scrape names them):
//
//	psengine_bounties_total{verdict,outcome}  bounties settled; outcome is answered (the scanner's own answer),
//	                                          special (a special result after a failure) or unanswered
//	psengine_scan_duration_seconds            histogram of scans
//	psengine_fetch_bytes_total                artifact bytes fetched
//	psengine_deliveries_total{result}         answer POSTs settled: ok, refused, expired or failed
//	psengine_queue_depth                      jobs queued (brokers with a Len method)
//	psengine_workers_busy                     workers processing a bounty
//	psengine_child_restarts_total{reason}     worker children replaced: died, killed or recycled
//	psengine_updates_total{result}            definition updates: ok, failed or unchanged
//	psengine_cache_lookups_total{result}      result cache lookups before a scan: hit or miss (cache.go)
//	psengine_info{product,vendor_version,signatures_version}  1, the engine's head
//
// Traces: a span per bounty ("psengine.bounty", with the bounty id, the
// artifact's sha256 and the verdict) with a child span per stage: fetch,
// identify, scan, bid and deliver. The engine's log
// records are made with the ...Context forms of log/slog, so a handler can
// add the trace id.

func (e *Engine) newTelemetry() telemetry.Telemetry {
	return telemetry.New(e.cfg.meters, e.cfg.tracers, telemetry.Gauges{
		QueueDepth: func() (int64, bool) {
			l, ok := e.broker.(interface{ Len() int })
			if !ok {
				return 0, false
			}
			return int64(l.Len()), true
		},
		WorkersBusy: func() int64 { return int64(len(e.workers) - len(e.slots)) },
		Info: func() (string, string, string, bool) {
			env := e.env.Load()
			if env == nil {
				return "", "", "", false
			}
			return env.head.Product, env.head.Scanner.VendorVersion, env.head.Scanner.SignaturesVersion, true
		},
	})
}

// startBounty starts the span of b's journey.
func (e *Engine) startBounty(ctx context.Context, b Bounty) (context.Context, trace.Span) {
	return e.tel.StartBounty(ctx, b.ID.String(), string(b.ArtifactType))
}

// endBounty records how res was settled and ends its span.
func (e *Engine) endBounty(ctx context.Context, span trace.Span, res Result) {
	verdict, outcome := string(res.Analysis.Verdict), "answered"
	switch {
	case !res.Answered:
		verdict, outcome = "none", "unanswered"
	case res.Err != nil:
		outcome = "special"
	}
	e.tel.EndBounty(ctx, span, res.Bounty.SHA256, verdict, outcome, res.Err)
}

// delivered records a settled delivery.
func (e *Engine) delivered(ctx context.Context, err error) {
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, deliver.ErrExpired):
		result = "expired"
	case errors.Is(err, ErrPermanent):
		result = "refused"
	default:
		result = "failed"
	}
	e.tel.Delivered(ctx, result)
}
