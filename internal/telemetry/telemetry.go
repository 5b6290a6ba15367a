// Package telemetry holds the engine's OpenTelemetry instruments: the
// metrics its package documentation lists (psengine_bounties_total and the
// others) and the spans of a bounty and its stages. It speaks the OTel API
// only: the host chooses the providers.
package telemetry

import (
	"cmp"
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

const instrumentation = "github.com/polyswarm/psengine"

// Telemetry is the engine's instruments.
type Telemetry struct {
	tracer        trace.Tracer
	bounties      metric.Int64Counter
	scanDuration  metric.Float64Histogram
	fetchBytes    metric.Int64Counter
	deliveries    metric.Int64Counter
	childRestarts metric.Int64Counter
	updates       metric.Int64Counter
	cacheLookups  metric.Int64Counter
}

// Gauges are what the instruments observed on collection read: each
// returns its value, ok false when there is none to report.
type Gauges struct {
	QueueDepth  func() (int64, bool)
	WorkersBusy func() int64
	// Info returns the engine's head: product, vendor_version,
	// signatures_version.
	Info func() (product, vendor, signatures string, ok bool)
}

// New makes the instruments on mp and tp (nil: the globals of
// go.opentelemetry.io/otel). Errors of the metrics API are reported to
// otel.Handle and leave a no-op instrument.
func New(mp metric.MeterProvider, tp trace.TracerProvider, g Gauges) Telemetry {
	m := cmp.Or(mp, otel.GetMeterProvider()).Meter(instrumentation)
	t := Telemetry{tracer: cmp.Or(tp, otel.GetTracerProvider()).Tracer(instrumentation)}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	counter := func(name, unit, description string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(description))
		add(err)
		return c
	}
	t.bounties = counter("psengine.bounties", "{bounty}",
		"Bounties settled, by verdict and outcome (answered, special, unanswered).")
	var err error
	t.scanDuration, err = m.Float64Histogram("psengine.scan.duration", metric.WithUnit("s"),
		metric.WithDescription("How long scans took."),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
	add(err)
	t.fetchBytes = counter("psengine.fetch.bytes", "By", "Artifact bytes fetched.")
	t.deliveries = counter("psengine.deliveries", "{delivery}",
		"Answer deliveries settled, by result (ok, refused, expired, failed).")
	t.childRestarts = counter("psengine.child.restarts", "{child}",
		"Worker children replaced (process backend), by reason (died, killed, recycled).")
	t.updates = counter("psengine.updates", "{update}", "Definition updates, by result (ok, failed, unchanged).")
	t.cacheLookups = counter("psengine.cache.lookups", "{lookup}",
		"Result cache lookups before a scan, by result (hit, miss).")

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
		if n, ok := g.QueueDepth(); ok {
			o.ObserveInt64(queue, n)
		}
		o.ObserveInt64(busy, g.WorkersBusy())
		if product, vendor, signatures, ok := g.Info(); ok {
			o.ObserveInt64(info, 1, metric.WithAttributes(attribute.String("product", product),
				attribute.String("vendor_version", vendor), attribute.String("signatures_version", signatures)))
		}
		return nil
	}, queue, busy, info)
	add(err)
	if len(errs) > 0 {
		otel.Handle(errors.Join(errs...))
	}
	return t
}

// StartBounty starts the span of a bounty's journey, with the bounty's id
// and artifact type (the sha256 is set at the end: a fetch may learn it).
func (t Telemetry) StartBounty(ctx context.Context, id, artifactType string) (context.Context, trace.Span) {
	ctx, span := t.tracer.Start(ctx, "psengine.bounty", trace.WithSpanKind(trace.SpanKindInternal))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("psengine.bounty.id", id), attribute.String("psengine.artifact.type", artifactType))
	}
	return ctx, span
}

// EndBounty records how a bounty was settled (outcome: answered, special
// or unanswered; verdict "none" when unanswered) and ends its span.
func (t Telemetry) EndBounty(ctx context.Context, span trace.Span, sha256, verdict, outcome string, err error) {
	t.bounties.Add(ctx, 1, metric.WithAttributes(attribute.String("verdict", verdict), attribute.String("outcome", outcome)))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("psengine.artifact.sha256", sha256),
			attribute.String("psengine.verdict", verdict), attribute.String("psengine.outcome", outcome))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
	}
	span.End()
}

// Step runs one step of a bounty in a child span of the bounty's, when
// the bounty's is recording.
func (t Telemetry) Step(ctx context.Context, name string, run func(context.Context) error) error {
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

// Delivered records a settled delivery: ok, refused, expired or failed.
func (t Telemetry) Delivered(ctx context.Context, result string) {
	t.deliveries.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
}

// Scanned records a scan's duration.
func (t Telemetry) Scanned(ctx context.Context, d time.Duration) {
	t.scanDuration.Record(ctx, d.Seconds())
}

// Fetched records artifact bytes fetched.
func (t Telemetry) Fetched(ctx context.Context, n int64) { t.fetchBytes.Add(ctx, n) }

// ChildRestarted records a worker child replaced: died, killed or
// recycled.
func (t Telemetry) ChildRestarted(reason string) {
	t.childRestarts.Add(context.Background(), 1, metric.WithAttributes(attribute.String("reason", reason)))
}

// Updated records a definitions update: ok, failed or unchanged.
func (t Telemetry) Updated(ctx context.Context, result string) {
	t.updates.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
}

// CacheLookup counts a result cache lookup (result: hit or miss) and
// notes it on the bounty's span.
func (t Telemetry) CacheLookup(ctx context.Context, result string) {
	t.cacheLookups.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.String("psengine.cache", result))
	}
}
