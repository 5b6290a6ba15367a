package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
)

// collector is an OTLP/HTTP traces receiver: the spans it was sent, by
// name.
type collector struct {
	mu    sync.Mutex
	spans map[string][]exported
	paths []string
}

type exported struct{ traceID, spanID, parentID string }

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var req collectortrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &req)
	}
	if err != nil || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paths = append(c.paths, r.URL.Path)
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				c.spans[s.Name] = append(c.spans[s.Name], exported{hex.EncodeToString(s.TraceId),
					hex.EncodeToString(s.SpanId), hex.EncodeToString(s.ParentSpanId)})
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	_, _ = w.Write(out)
}

// Traces go to the OTLP collector named by --otlp-endpoint, or by
// OTEL_EXPORTER_OTLP_ENDPOINT: a bounty span with a scan span under it;
// the spans still batched are flushed at exit; the scanner's log record
// carries the ids of the scan span.
func TestTracesExportedAndLogged(t *testing.T) {
	for _, how := range []string{"flag", "env"} {
		t.Run(how, func(t *testing.T) {
			c := &collector{spans: map[string][]exported{}}
			srv := httptest.NewServer(c)
			defer srv.Close()
			env := map[string]string{"PSENGINE_HOME": t.TempDir(), "LOG_LEVEL": "info", "LOG_FORMAT": "json"}
			sink := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			defer sink.Close()
			args := []string{"webhook", "--insecure", "--allow-private", "--addr", "127.0.0.1", "-p", "0"}
			if how == "flag" {
				args = append(args, "--otlp-endpoint", srv.URL+"/otlp/")
			} else {
				env["OTEL_EXPORTER_OTLP_ENDPOINT"] = srv.URL + "/otlp"
			}
			answered := make(chan struct{}, 1)
			out, stdout := io.Pipe()
			var stderr psenginetest.SyncBuffer
			p := &Program{Name: "tracetest", Scanner: &opsScanner{}, Stdout: stdout, Stderr: &stderr,
				Options: []psengine.Option{psengine.OnSuccess(func(context.Context, psengine.Result) { answered <- struct{}{} })},
				Getenv:  func(k string) string { return env[k] }}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			code := make(chan int, 1)
			go func() {
				c := p.Run(ctx, args)
				stdout.Close()
				code <- c
			}()
			base := listeningURL(t, out, &stderr)
			if code := postBounty(t, base, psenginetest.Bounty([]byte("MALWARE"), psenginetest.WithResponseURL(sink.URL+"/answer")), "d-1", ""); code != http.StatusAccepted {
				t.Fatalf("bounty: %d; stderr:\n%s", code, &stderr)
			}
			select {
			case <-answered:
			case <-time.After(30 * time.Second):
				t.Fatalf("not answered within 30s; stderr:\n%s", &stderr)
			}
			stopRun(t, cancel, code, &stderr) // flushes the batched spans

			c.mu.Lock()
			defer c.mu.Unlock()
			bounty, scan := c.spans["psengine.bounty"], c.spans["scan"]
			if len(bounty) != 1 || len(scan) != 1 {
				t.Fatalf("spans %v, want one bounty span and one scan span", c.spans)
			}
			if scan[0].traceID != bounty[0].traceID || scan[0].parentID != bounty[0].spanID {
				t.Errorf("scan span %+v is not a child of the bounty span %+v", scan[0], bounty[0])
			}
			if want := "/otlp/v1/traces"; len(c.paths) == 0 || c.paths[0] != want {
				t.Errorf("posted to %v, want %s", c.paths, want)
			}
			var found bool
			for line := range strings.SplitSeq(stderr.String(), "\n") {
				var rec map[string]any
				if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "scanning" {
					continue
				}
				found = true
				if rec["trace_id"] != scan[0].traceID || rec["span_id"] != scan[0].spanID {
					t.Errorf("the scanner's log record has trace_id %v span_id %v, want the scan span's %s %s",
						rec["trace_id"], rec["span_id"], scan[0].traceID, scan[0].spanID)
				}
			}
			if !found {
				t.Errorf("no \"scanning\" record in the logs:\n%s", &stderr)
			}
		})
	}
}

// The handler adds the ids only to records made with a context holding a
// span, and keeps doing so through WithAttrs.
func TestTraceHandler(t *testing.T) {
	var buf bytes.Buffer
	log := withTraceIDs(slog.New(slog.NewJSONHandler(&buf, nil))).With("k", "v")
	if withTraceIDs(log).Handler() != log.Handler() {
		t.Error("wrapping twice added a second handler")
	}
	tid, _ := trace.TraceIDFromHex("0102030405060708090a0b0c0d0e0f10")
	sid, _ := trace.SpanIDFromHex("0102030405060708")
	ctx := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	log.InfoContext(ctx, "in a span")
	log.InfoContext(context.Background(), "outside")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %s", len(lines), buf.String())
	}
	var in, outside map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &in); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &outside); err != nil {
		t.Fatal(err)
	}
	if in["trace_id"] != tid.String() || in["span_id"] != sid.String() || in["k"] != "v" {
		t.Errorf("record in a span: %v", in)
	}
	if _, ok := outside["trace_id"]; ok {
		t.Errorf("record outside a span has a trace_id: %v", outside)
	}
}
