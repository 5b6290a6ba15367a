package psengine

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/polyswarm/psengine/deliver"
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

const instrumentation = "github.com/polyswarm/psengine"

type telemetry struct {
	tracer        trace.Tracer
	bounties      metric.Int64Counter
	scanDuration  metric.Float64Histogram
	fetchBytes    metric.Int64Counter
	deliveries    metric.Int64Counter
	childRestarts metric.Int64Counter
	updates       metric.Int64Counter
}

// newTelemetry makes the engine's instruments. Errors of the metrics API
// are reported to otel.Handle and leave a no-op instrument.
func (e *Engine) newTelemetry() telemetry {
	mp, tp := e.cfg.meters, e.cfg.tracers
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	m := mp.Meter(instrumentation)
	t := telemetry{tracer: tp.Tracer(instrumentation)}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	t.bounties, err = m.Int64Counter("psengine.bounties", metric.WithUnit("{bounty}"),
		metric.WithDescription("Bounties settled, by verdict and outcome (answered, special, unanswered)."))
	add(err)
	t.scanDuration, err = m.Float64Histogram("psengine.scan.duration", metric.WithUnit("s"),
		metric.WithDescription("How long scans took."),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
	add(err)
	t.fetchBytes, err = m.Int64Counter("psengine.fetch.bytes", metric.WithUnit("By"),
		metric.WithDescription("Artifact bytes fetched."))
	add(err)
	t.deliveries, err = m.Int64Counter("psengine.deliveries", metric.WithUnit("{delivery}"),
		metric.WithDescription("Answer deliveries settled, by result (ok, refused, expired, failed)."))
	add(err)
	t.childRestarts, err = m.Int64Counter("psengine.child.restarts", metric.WithUnit("{child}"),
		metric.WithDescription("Worker children replaced (process backend), by reason (died, killed, recycled)."))
	add(err)
	t.updates, err = m.Int64Counter("psengine.updates", metric.WithUnit("{update}"),
		metric.WithDescription("Definition updates, by result (ok, failed)."))
	add(err)

	queue, err := m.Int64ObservableGauge("psengine.queue.depth", metric.WithUnit("{job}"),
		metric.WithDescription("Jobs queued, for brokers that can tell."))
	add(err)
	busy, err := m.Int64ObservableGauge("psengine.workers.busy", metric.WithUnit("{worker}"),
		metric.WithDescription("Workers processing a bounty."))
	add(err)
	info, err := m.Int64ObservableGauge("psengine.info",
		metric.WithDescription("The engine's head: 1, with its product and versions as attributes."))
	add(err)
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if l, ok := e.broker.(interface{ Len() int }); ok {
			o.ObserveInt64(queue, int64(l.Len()))
		}
		o.ObserveInt64(busy, int64(len(e.workers)-len(e.slots)))
		if env := e.env.Load(); env != nil {
			h := env.head
			o.ObserveInt64(info, 1, metric.WithAttributes(attribute.String("product", h.Product),
				attribute.String("vendor_version", h.Scanner.VendorVersion),
				attribute.String("signatures_version", h.Scanner.SignaturesVersion)))
		}
		return nil
	}, queue, busy, info)
	add(err)
	if len(errs) > 0 {
		otel.Handle(errors.Join(errs...))
	}
	return t
}

// startBounty starts the span of a bounty's journey, with the bounty's id
// and artifact type (the sha256 is set at the end: a fetch may learn it).
func (t telemetry) startBounty(ctx context.Context, b Bounty) (context.Context, trace.Span) {
	ctx, span := t.tracer.Start(ctx, "psengine.bounty", trace.WithSpanKind(trace.SpanKindInternal))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("psengine.bounty.id", b.ID.String()),
			attribute.String("psengine.artifact.type", string(b.ArtifactType)))
	}
	return ctx, span
}

// endBounty records how a bounty was settled and ends its span.
func (t telemetry) endBounty(ctx context.Context, span trace.Span, res Result) {
	verdict, outcome := string(res.Analysis.Verdict), "answered"
	switch {
	case !res.Answered:
		verdict, outcome = "none", "unanswered"
	case res.Err != nil:
		outcome = "special"
	}
	t.bounties.Add(ctx, 1, metric.WithAttributes(attribute.String("verdict", verdict), attribute.String("outcome", outcome)))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("psengine.artifact.sha256", res.Bounty.SHA256),
			attribute.String("psengine.verdict", verdict), attribute.String("psengine.outcome", outcome))
		if res.Err != nil {
			span.RecordError(res.Err)
			span.SetStatus(codes.Error, res.Err.Error())
		}
	}
	span.End()
}

// step runs one step of a bounty, in a child span of the bounty's when it
// is traced.
func (t telemetry) step(ctx context.Context, name string, run func(context.Context) error) error {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return run(ctx)
	}
	ctx, span := t.tracer.Start(ctx, name)
	err := run(ctx)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	return err
}

// delivered records a settled delivery.
func (t telemetry) delivered(ctx context.Context, err error) {
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
	t.deliveries.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
}

// scanned records a scan's duration.
func (t telemetry) scanned(ctx context.Context, d time.Duration) {
	t.scanDuration.Record(ctx, d.Seconds())
}
