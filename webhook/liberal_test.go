package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/psenginetest"
	"github.com/polyswarm/psengine/webhook"
)

// Every shape PolySwarm's own tools send is accepted (202) and answered:
// phase missing, null or with a _window suffix; rules {}, [] or missing;
// an empty, missing or unparseable expiration; artifact_type in any case or
// missing; unknown fields; ids as numbers, numeric strings or UUIDs.
func TestLiberalShapesAnswered(t *testing.T) {
	var mu sync.Mutex
	answers := map[string]map[string]any{}
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a map[string]any
		_ = json.NewDecoder(r.Body).Decode(&a)
		mu.Lock()
		answers[strings.TrimPrefix(r.URL.Path, "/answer/")] = a
		mu.Unlock()
	}))
	defer sink.Close()
	scan := psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
		return psengine.Analysis{Verdict: psengine.Malicious, Confidence: 0.5}, nil
	})
	dir := t.TempDir()
	engine := psengine.New(scan, psengine.WithDirs(envdirs.Dirs{Home: dir, Temp: dir}), psengine.WithGetenv(func(string) string { return "" }))
	defer engine.Shutdown(context.Background())
	h := newHandler(t, engine)

	shapes := map[string]string{
		"phase missing":           `"artifact_type": "file"`,
		"phase null":              `"artifact_type": "file", "phase": null`,
		"assertion_window":        `"artifact_type": "file", "phase": "assertion_window"`,
		"ARBITRATION_WINDOW":      `"artifact_type": "file", "phase": "ARBITRATION_WINDOW"`,
		"rules {}":                `"artifact_type": "file", "rules": {}`,
		"rules []":                `"artifact_type": "file", "rules": []`,
		"expiration empty":        `"artifact_type": "file", "expiration": ""`,
		"expiration garbage":      `"artifact_type": "file", "expiration": "next tuesday"`,
		"artifact_type FILE":      `"artifact_type": "FILE"`,
		"artifact_type File":      `"artifact_type": "File"`,
		"artifact_type missing":   `"unknown_field": {"nested": [1, 2]}`,
		"legacy artifact_url":     `"artifact_type": "file", "community": "default"`,
		"numeric string id":       `"artifact_type": "file"`,
		"uuid id":                 `"artifact_type": "file"`,
		"huge number id":          `"artifact_type": "file"`,
		"no expiration, no rules": `"artifact_type": "file", "duration": "30"`,
	}
	ids := map[string]string{
		"numeric string id": `"12345"`,
		"uuid id":           `"5b9a3f0c-7d2e-4a61-9e8b-1c2d3e4f5a6b"`,
		"huge number id":    `123456789012345678901234567890`,
	}
	i := 0
	for name, extra := range shapes {
		i++
		id, ok := ids[name]
		if !ok {
			id = fmt.Sprint(1000 + i)
		}
		path := strings.Trim(id, `"`)
		uri := `"artifact_uri": "data:,shape-` + fmt.Sprint(i) + `"`
		if name == "legacy artifact_url" {
			uri = `"artifact_url": "data:,shape-` + fmt.Sprint(i) + `"`
		}
		body := []byte(`{"id": ` + id + `, ` + uri + `, "response_url": "` + sink.URL + `/answer/` + path + `", ` + extra + `}`)
		if got := serve(t, h, signed("bounty", "delivery-"+fmt.Sprint(i), body)); got.Code != http.StatusAccepted {
			t.Errorf("%s: %+v, want 202 (body %s)", name, got, body)
			continue
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			a, ok := answers[path]
			mu.Unlock()
			if ok {
				if a["verdict"] != "malicious" {
					t.Errorf("%s: answer %v", name, a)
				}
				_, hasBid := a["bid"]
				if vote := strings.Contains(name, "ARBITRATION"); hasBid == vote {
					t.Errorf("%s: answer %v: a vote has no bid, an assertion has one", name, a)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: not answered within 10s", name)
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// And what cannot be answered at all is refused, saying why.
	for name, body := range map[string]string{
		"no artifact uri":  `{"id": 1, "artifact_type": "file", "response_url": "https://api.polyswarm.test/a"}`,
		"no response url":  `{"id": 2, "artifact_type": "file", "artifact_uri": "data:,x"}`,
		"no id":            `{"artifact_type": "file", "artifact_uri": "data:,x", "response_url": "https://api.polyswarm.test/a"}`,
		"not a bounty":     `[1, 2, 3]`,
		"unknown artifact": `{"id": 3, "artifact_type": "blob", "artifact_uri": "data:,x", "response_url": "https://api.polyswarm.test/a"}`,
	} {
		got := serve(t, h, signed("bounty", "bad-"+name, []byte(body)))
		if got.Code != http.StatusBadRequest || !got.Error {
			t.Errorf("%s: %+v, want 400 saying why", name, got)
		}
	}
}

// The sha256 placeholders of real payloads: microengine-webhooks-py's
// integration fixture (guid, artifact_url, "expiration": "", "rules": [],
// "sha256": "asdf") and the payload of PolySwarm's documentation
// ("sha256": "optional-for-file") are accepted (202) with one warning
// logged each, and answered with the content's own sha256 (an unknown
// answer keeps malware_family, as the verdict schema requires). A
// well-formed sha256 that does not match the content stays CANNOT-FETCH.
func TestPlaceholderSHA256Answered(t *testing.T) {
	var mu sync.Mutex
	answers := map[string]map[string]any{}
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a map[string]any
		_ = json.NewDecoder(r.Body).Decode(&a)
		mu.Lock()
		answers[strings.TrimPrefix(r.URL.Path, "/answer/")] = a
		mu.Unlock()
	}))
	defer sink.Close()
	scan := psengine.ScannerFunc(func(_ context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
		if strings.HasPrefix(a.URI, "data:,benign") {
			return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.5}, nil
		}
		return psengine.Analysis{Verdict: psengine.Unknown}, nil
	})
	dir := t.TempDir()
	engine := psengine.New(scan, psengine.WithDirs(envdirs.Dirs{Home: dir, Temp: dir}), psengine.WithGetenv(func(string) string { return "" }))
	defer engine.Shutdown(context.Background())
	var logs psenginetest.SyncBuffer
	h := newHandler(t, engine, webhook.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))

	mismatch := strings.Repeat("ab", 32)
	bodies := map[string]string{
		"asdf": `{"guid": "0b6d3f7e-3c1a-4a8e-9f0c-2d5e6f7a8b9c", "artifact_type": "file",
			"artifact_url": "data:,benign-asdf", "expiration": "", "rules": [], "sha256": "asdf",
			"metadata": {}, "response_url": "` + sink.URL + `/answer/asdf"}`,
		"optional-for-file": `{"id": 1234, "artifact_type": "FILE", "artifact_uri": "data:,unknown-doc",
			"sha256": "optional-for-file", "mimetype": "text/plain", "expiration": "2030-01-01T00:00:00+0000",
			"phase": "assertion", "rules": {"min_allowed_bid": 62500000000000000, "max_allowed_bid": 1000000000000000000},
			"metadata": {"filename": "eicar.txt"}, "response_url": "` + sink.URL + `/answer/optional-for-file"}`,
		"mismatch": `{"id": 5, "artifact_uri": "data:,benign-mismatch", "sha256": "` + mismatch + `",
			"response_url": "` + sink.URL + `/answer/mismatch"}`,
	}
	for name, body := range bodies {
		if got := serve(t, h, signed("bounty", "placeholder-"+name, []byte(body))); got.Code != http.StatusAccepted {
			t.Errorf("%s: %+v, want 202", name, got)
		}
	}
	answer := func(name string) map[string]any {
		t.Helper()
		var a map[string]any
		psenginetest.Eventually(t, name+" answered", func() bool {
			mu.Lock()
			defer mu.Unlock()
			a = answers[name]
			return a != nil
		})
		return a
	}
	family := func(a map[string]any) (string, bool) {
		meta, _ := a["metadata"].(map[string]any)
		f, ok := meta["malware_family"].(string)
		return f, ok
	}
	if a := answer("asdf"); a["verdict"] != "benign" {
		t.Errorf("asdf: answer %v, want benign", a)
	} else if f, ok := family(a); !ok || f != "" {
		t.Errorf("asdf: malware_family %q present %v, want \"\"", f, ok)
	}
	if a := answer("optional-for-file"); a["verdict"] != "unknown" {
		t.Errorf("optional-for-file: answer %v, want unknown", a)
	} else if _, ok := family(a); !ok {
		t.Errorf("optional-for-file: unknown answer %v without malware_family", a)
	}
	a := answer("mismatch")
	meta, _ := a["metadata"].(map[string]any)
	if a["verdict"] != "unknown" || !strings.Contains(fmt.Sprint(meta["comments"]), psengine.CommentCannotFetch) {
		t.Errorf("mismatching sha256: %v, want unknown %s", a, psengine.CommentCannotFetch)
	}
	for _, placeholder := range []string{"asdf", "optional-for-file"} {
		if n := strings.Count(logs.String(), `sha256 \"`+placeholder+`\"`); n != 1 {
			t.Errorf("sha256 %s logged %d times, want once:\n%s", placeholder, n, logs.String())
		}
	}
}
