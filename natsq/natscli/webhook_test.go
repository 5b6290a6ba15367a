package natscli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polyswarm/psengine/psenginetest"
)

// The single-machine deployment: webhook intake with the queue embedded
// (durable, no install step) and listening on loopback, and a worker
// process joining it; the answer reaches the bounty's response_url.
func TestWebhookIntakeWithEmbeddedQueue(t *testing.T) {
	var mu sync.Mutex
	var answers []map[string]any
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a map[string]any
		_ = json.NewDecoder(r.Body).Decode(&a)
		mu.Lock()
		answers = append(answers, a)
		mu.Unlock()
	}))
	defer sink.Close()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsURL := "nats://" + l.Addr().String()
	l.Close()

	hook, hookOut, hookErr := program(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hookDone := make(chan int, 1)
	go func() {
		hookDone <- hook.Run(ctx, []string{"webhook", "--backend", "nats", "--nats-embedded", t.TempDir(), "--nats-url", natsURL,
			"--insecure", "-p", "0"})
	}()
	waitForLog(t, hookOut, "listening on http://")
	addr := regexp.MustCompile(`listening on (http://\S+)`).FindStringSubmatch(hookOut.String())[1]

	w, _, werr := program(t, "")
	workerDone := make(chan int, 1)
	go func() { // the response_url is on loopback: --nats-allow-private
		workerDone <- w.Run(ctx, []string{"worker", "--backend", "nats", "--nats-url", natsURL, "--workers", "1",
			"--nats-allow-private"})
	}()

	body := fmt.Sprintf(`{"id": 12345678901234567890, "artifact_type": "FILE", "artifact_uri": %q, "sha256": %q,
		"expiration": %q, "response_url": %q, "rules": {"min_allowed_bid": 62500000000000000, "max_allowed_bid": 1000000000000000000}}`,
		psenginetest.DataURI(psenginetest.EICAR()), psenginetest.SHA256(psenginetest.EICAR()),
		time.Now().Add(time.Hour).UTC().Format(time.RFC3339), sink.URL+"/answer")
	req, _ := http.NewRequest(http.MethodPost, addr+"/", bytes.NewReader([]byte(body)))
	req.Header.Set("X-POLYSWARM-EVENT", "bounty")
	req.Header.Set("X-POLYSWARM-DELIVERY", "delivery-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook answered %d %s; log:\n%s", resp.StatusCode, got, hookErr.String())
	}

	deadline := time.Now().Add(time.Minute)
	for {
		mu.Lock()
		n := len(answers)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer; worker log:\n%s", werr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if code := <-workerDone; code != 0 {
		t.Errorf("worker exit %d:\n%s", code, werr.String())
	}
	if code := <-hookDone; code != 0 {
		t.Errorf("webhook exit %d:\n%s", code, hookErr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(answers) != 1 || answers[0]["verdict"] != "malicious" {
		t.Errorf("answers %v, want one malicious", answers)
	}
	if md, _ := answers[0]["metadata"].(map[string]any); md == nil || !strings.HasPrefix(fmt.Sprint(md["malware_family"]), "EICAR") {
		t.Errorf("answer metadata %v", answers[0]["metadata"])
	}
}
