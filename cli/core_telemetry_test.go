// The core depends on the OpenTelemetry API only; which SDK records its
// spans and metrics is the host's choice. The spans and metrics the core
// emits are checked here, in the module that wires an SDK, so that the
// core's go.mod stays free of it.
package cli_test

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
)

// marker finds "MALWARE" in the artifact.
var marker = psengine.ScannerFunc(func(ctx context.Context, env psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	b, err := a.Bytes()
	if err != nil {
		return psengine.Analysis{}, err
	}
	if strings.Contains(string(b), "MALWARE") {
		return psengine.Analysis{Verdict: psengine.Malicious, Confidence: 0.5, Metadata: psengine.Metadata{MalwareFamily: "Test.Marker"}}, nil
	}
	return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.25}, nil
})

// telemetryEngine is an engine whose spans and metrics are recorded.
func telemetryEngine(t *testing.T, s psengine.Scanner, opts ...psengine.Option) (*psengine.Engine, *tracetest.SpanRecorder, *sdkmetric.ManualReader) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })
	e := psenginetest.Engine(t, s, append([]psengine.Option{psengine.WithGetenv(func(string) string { return "" }), psengine.WithTracerProvider(tp), psengine.WithMeterProvider(mp)}, opts...)...)
	return e, spans, reader
}

// A span per bounty, with a child span per step; the bounty's attributes.
func TestSpansPerStep(t *testing.T) {
	answers := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer answers.Close()
	e, spans, _ := telemetryEngine(t, marker)
	b := psenginetest.Bounty([]byte("MALWARE"), psenginetest.WithResponseURL(answers.URL+"/answer"))
	if _, err := e.AnalyzeBounty(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	ended := spans.Ended()
	var root sdktrace.ReadOnlySpan
	for _, s := range ended {
		if s.Name() == "psengine.bounty" {
			root = s
		}
	}
	if root == nil {
		t.Fatalf("no bounty span among %d", len(ended))
	}
	var steps []string
	for _, s := range ended {
		if s.Parent().SpanID() == root.SpanContext().SpanID() {
			steps = append(steps, s.Name())
		}
	}
	want := []string{"fetch", "identify", "scan", "bid", "deliver"}
	if !slices.Equal(steps, want) {
		t.Errorf("child spans %v, want %v", steps, want)
	}
	attrs := map[attribute.Key]string{}
	for _, kv := range root.Attributes() {
		attrs[kv.Key] = kv.Value.String()
	}
	if attrs["psengine.bounty.id"] != b.ID.String() || attrs["psengine.artifact.sha256"] != b.SHA256 || attrs["psengine.verdict"] != "malicious" {
		t.Errorf("bounty span attributes %v", attrs)
	}
}

// The metrics count bounties by verdict and outcome, scans, fetched bytes.
func TestMetricsCountBounties(t *testing.T) {
	e, _, reader := telemetryEngine(t, marker)
	ctx := context.Background()
	for _, data := range []string{"MALWARE", "MALWARE again", "clean"} {
		psenginetest.Analyze(t, e, []byte(data))
	}
	if res, _ := e.AnalyzeBounty(ctx, psenginetest.Bounty([]byte("x"), psenginetest.WithSHA256("00"+psenginetest.SHA256([]byte("y"))[2:]))); !res.Answered {
		t.Fatal("checksum mismatch not answered")
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	var scans uint64
	var fetched int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					switch m.Name {
					case "psengine.bounties":
						v, _ := p.Attributes.Value("verdict")
						o, _ := p.Attributes.Value("outcome")
						got[v.AsString()+"/"+o.AsString()] += p.Value
					case "psengine.fetch.bytes":
						fetched += p.Value
					}
				}
			case metricdata.Histogram[float64]:
				if m.Name == "psengine.scan.duration" {
					for _, p := range d.DataPoints {
						scans += p.Count
					}
				}
			}
		}
	}
	want := map[string]int64{"malicious/answered": 2, "benign/answered": 1, "unknown/special": 1}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("bounties %s = %d, want %d (all: %v)", k, got[k], n, got)
		}
	}
	// The mismatched artifact failed its fetch: its byte is not counted.
	if want := int64(len("MALWARE") + len("MALWARE again") + len("clean")); scans != 3 || fetched != want {
		t.Errorf("%d scans, %d bytes fetched; want 3 and %d", scans, fetched, want)
	}
}

// discardSpans is a span exporter that drops what it gets.
type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }

// BenchmarkTelemetry: Analyze of 4 KiB data: artifacts with nothing
// configured (the global no-op providers) and with a real TracerProvider
// (every span sampled, batched to an exporter) and MeterProvider. Target:
// "on" at most 1.10x "off" in CPU time (cpu-ns/op).
func BenchmarkTelemetry(b *testing.B) {
	uris := make([]string, 64)
	for i := range uris {
		buf := make([]byte, 4096)
		_, _ = rand.Read(buf)
		uris[i] = psenginetest.DataURI(buf)
	}
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			opts := []psengine.Option{psengine.WithGetenv(func(string) string { return "" })}
			if on {
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardSpans{}))
				mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
				defer tp.Shutdown(context.Background())
				defer mp.Shutdown(context.Background())
				opts = append(opts, psengine.WithTracerProvider(tp), psengine.WithMeterProvider(mp))
			}
			e := psenginetest.Engine(b, marker, opts...)
			ctx := context.Background()
			defer psenginetest.MeasureCPU(b)()
			for i := 0; b.Loop(); i++ {
				if res, err := e.Analyze(ctx, uris[i%len(uris)]); err != nil || !res.Answered {
					b.Fatal(err)
				}
			}
		})
	}
}
