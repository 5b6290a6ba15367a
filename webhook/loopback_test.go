package webhook_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/psenginetest"
	"github.com/polyswarm/psengine/webhook"
)

// TestLoopback drives the whole path over real loopback HTTP, with the
// engine's default fetcher and deliverer: a signed bounty POSTed to the
// handler on an httptest server, its artifact fetched from another, its
// answer POSTed to a third that fails twice with 503 before taking it.
func TestLoopback(t *testing.T) {
	sample := append([]byte("header "), marker...)
	artifacts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/artifact" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(sample)
	}))
	defer artifacts.Close()

	var mu sync.Mutex
	var statuses []int
	answers := make(chan string, 10)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		code := http.StatusOK
		if len(statuses) < 2 {
			code = http.StatusServiceUnavailable
		}
		statuses = append(statuses, code)
		w.WriteHeader(code)
		if code == http.StatusOK {
			answers <- string(body)
		}
	}))
	defer receiver.Close()

	dir := t.TempDir()
	engine := psengine.New(psengine.ScannerFunc(func(_ context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
		data, err := a.Bytes()
		if err != nil {
			return psengine.Analysis{}, err
		}
		if bytes.Contains(data, marker) {
			return psengine.Analysis{Verdict: psengine.Malicious, Confidence: 0.9}, nil
		}
		return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.5}, nil
	}), psengine.WithDirs(envdirs.Dirs{Home: dir, Temp: dir}), psengine.WithGetenv(func(string) string { return "" }))
	intake := httptest.NewServer(newHandler(t, engine, webhook.WithMaxBody(64<<10)))
	defer intake.Close()

	send := func(req *http.Request) int {
		t.Helper()
		res, err := intake.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		return res.StatusCode
	}
	newPost := func(body io.Reader, headers ...string) *http.Request {
		req, err := http.NewRequest(http.MethodPost, intake.URL+"/any/path", body)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		return req
	}

	if code := send(must(http.NewRequest(http.MethodGet, intake.URL, nil))); code != 200 {
		t.Errorf("GET /: %d, want 200", code)
	}
	if code := send(newPost(nil, webhook.HeaderEvent, "ping", webhook.HeaderSignature, webhook.Sign(secret, nil))); code != 200 {
		t.Errorf("ping: %d, want 200", code)
	}
	big := bytes.Repeat([]byte("x"), 1<<20)
	// An io.Reader that is not a *bytes.Reader: sent chunked, no length.
	if code := send(newPost(io.MultiReader(bytes.NewReader(big)), webhook.HeaderEvent, "bounty",
		webhook.HeaderSignature, webhook.Sign(secret, big))); code != 413 {
		t.Errorf("1 MiB chunked body: %d, want 413", code)
	}

	body := bountyJSON(t, "9", sample, psenginetest.WithURI(artifacts.URL+"/artifact"),
		psenginetest.WithResponseURL(receiver.URL+"/answer"), psenginetest.WithExpiration(time.Now().Add(time.Minute)))
	if code := send(newPost(bytes.NewReader(body), webhook.HeaderEvent, "bounty", webhook.HeaderDelivery, "d-9",
		webhook.HeaderSignature, webhook.Sign(secret, body))); code != 202 {
		t.Fatalf("bounty: %d, want 202", code)
	}
	var got string
	select {
	case got = <-answers:
	case <-time.After(30 * time.Second):
		t.Fatal("no answer within 30s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := engine.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(statuses) != 3 || len(answers) != 0 {
		t.Errorf("receiver answered %v and took %d more answers; want 503, 503, 200 and one answer", statuses, len(answers))
	}
	a := decodeAnswer(t, got)
	if a.Verdict != "malicious" {
		t.Errorf("answer %s, want malicious", got)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
