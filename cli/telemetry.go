package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/polyswarm/psengine"
)

// opsFlags are the flags of webhook and worker that make a long-running
// engine operable: where its metrics and health are served, where its
// traces go, and how often its definitions are updated.
type opsFlags struct {
	metricsAddr  string
	otlpEndpoint string
	updateEvery  time.Duration
}

// addOpsFlags registers the operation flags on fs.
func addOpsFlags(fs *flag.FlagSet) *opsFlags {
	f := &opsFlags{}
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve /metrics (Prometheus), /healthz and /readyz on [HOST]:PORT (no host: 127.0.0.1; 0.0.0.0:PORT for every interface; port 0 picks a free one)")
	fs.StringVar(&f.otlpEndpoint, "otlp-endpoint", "", "export traces over OTLP/HTTP to this collector URL (as OTEL_EXPORTER_OTLP_ENDPOINT: /v1/traces is appended)")
	fs.DurationVar(&f.updateEvery, "update-interval", 0, "update the engine's definitions this often (0: never)")
	return f
}

// check reports a usage error in the operation flags.
func (f *opsFlags) check() error {
	if f.metricsAddr != "" {
		if _, port, err := net.SplitHostPort(f.metricsAddr); err != nil || port == "" {
			return usageError{fmt.Sprintf("--metrics-addr %q: want HOST:PORT (such as 127.0.0.1:9090 or :9090)", f.metricsAddr)}
		}
	}
	if f.otlpEndpoint != "" {
		if _, err := otlpURL(f.otlpEndpoint); err != nil {
			return usageError{"--otlp-endpoint: " + err.Error()}
		}
	}
	if f.updateEvery < 0 {
		return usageError{"--update-interval must not be negative"}
	}
	return nil
}

// otlpURL is the traces URL of a collector's base URL: /v1/traces appended
// to its path, as for OTEL_EXPORTER_OTLP_ENDPOINT.
func otlpURL(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q: want an http:// or https:// URL with a host", base)
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/v1/traces"
	return u.String(), nil
}

// telemetry is what a long-running command reports through: the meter
// provider whose exporter /metrics scrapes, the tracer provider exporting
// over OTLP, each nil when not asked for.
type telemetry struct {
	registry *prometheus.Registry
	meters   *sdkmetric.MeterProvider
	tracers  *sdktrace.TracerProvider
}

// newTelemetry makes the providers the flags ask for: metrics when
// --metrics-addr is set, traces when --otlp-endpoint or the standard
// OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// variables are (OTEL_TRACES_EXPORTER=none turns the variables off). The
// exporter reads the other OTEL_EXPORTER_OTLP_* variables (headers,
// timeout, compression, certificates) itself.
func (p *Program) newTelemetry(ctx context.Context, log *slog.Logger, f *opsFlags) (*telemetry, error) {
	t := &telemetry{}
	endpoint, err := p.tracesEndpoint(f)
	if err != nil {
		return nil, err
	}
	if f.metricsAddr == "" && endpoint == "" {
		return t, nil
	}
	res, err := resource.New(ctx, resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", p.Name)),
		resource.WithFromEnv()) // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES win
	if err != nil {
		if res == nil {
			return nil, fmt.Errorf("telemetry resource: %w", err)
		}
		// A partial resource is still usable; the error says which
		// variable was malformed.
		log.WarnContext(ctx, "telemetry resource", "err", err)
	}
	if f.metricsAddr != "" {
		t.registry = prometheus.NewRegistry()
		t.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		// The engine's instruments are one scope: the otel_scope_* labels
		// would only repeat it on every series.
		exp, err := otelprom.New(otelprom.WithRegisterer(t.registry), otelprom.WithoutScopeInfo())
		if err != nil {
			return nil, fmt.Errorf("prometheus exporter: %w", err)
		}
		t.meters = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	}
	if endpoint != "" {
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
		if err != nil {
			return nil, errors.Join(fmt.Errorf("OTLP trace exporter: %w", err), t.shutdown(ctx))
		}
		t.tracers = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	}
	return t, nil
}

// tracesEndpoint is where traces go: --otlp-endpoint, else the standard
// variables, else nowhere ("").
func (p *Program) tracesEndpoint(f *opsFlags) (string, error) {
	if f.otlpEndpoint != "" {
		return otlpURL(f.otlpEndpoint)
	}
	if strings.EqualFold(strings.TrimSpace(p.Getenv("OTEL_TRACES_EXPORTER")), "none") {
		return "", nil
	}
	if u := p.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); u != "" {
		return u, nil // used as it is, as the specification says
	}
	if base := p.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); base != "" {
		u, err := otlpURL(base)
		if err != nil {
			return "", usageError{"OTEL_EXPORTER_OTLP_ENDPOINT: " + err.Error()}
		}
		return u, nil
	}
	return "", nil
}

// engineOptions hand the providers to the engine.
func (t *telemetry) engineOptions() []psengine.Option {
	var opts []psengine.Option
	if t.meters != nil {
		opts = append(opts, psengine.WithMeterProvider(t.meters))
	}
	if t.tracers != nil {
		opts = append(opts, psengine.WithTracerProvider(t.tracers))
	}
	return opts
}

// shutdown flushes and stops the providers (spans still batched are sent).
func (t *telemetry) shutdown(ctx context.Context) error {
	var errs []error
	if t.tracers != nil {
		if err := t.tracers.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flushing traces: %w", err))
		}
	}
	if t.meters != nil {
		if err := t.meters.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping metrics: %w", err))
		}
	}
	return errors.Join(errs...)
}

// traceHandler adds the trace and span ids of the record's context, when it
// holds a span, to each record: a log line then leads to its trace.
type traceHandler struct{ slog.Handler }

// withTraceIDs wraps l's handler with traceHandler.
func withTraceIDs(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(traceHandler); ok {
		return l
	}
	return slog.New(traceHandler{l.Handler()})
}

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone() // the caller's record may share its attributes' storage
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
