package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/webhook"
)

// listeningURL reads the "listening on URL" line `webhook` prints first on
// out and returns the URL; the rest of out is drained in the background.
// stderr is shown if the line does not come.
func listeningURL(t *testing.T, out io.Reader, stderr fmt.Stringer) string {
	t.Helper()
	r := bufio.NewReader(out)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the listening line: %v; stderr:\n%s", err, stderr)
	}
	go func() { _, _ = io.Copy(io.Discard, r) }()
	base, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok {
		t.Fatalf("first line %q", line)
	}
	return base
}

// postBounty POSTs b to the webhook at base as PolySwarm would (event
// bounty, the delivery id, signed with secret unless it is "") and returns
// the status code.
func postBounty(t *testing.T, base string, b psengine.Bounty, delivery, secret string) int {
	t.Helper()
	body, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, base, bytes.NewReader(body))
	req.Header.Set(webhook.HeaderEvent, "bounty")
	req.Header.Set(webhook.HeaderDelivery, delivery)
	if secret != "" {
		req.Header.Set(webhook.HeaderSignature, webhook.Sign(secret, body))
	}
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// stopRun cancels a running `webhook` and checks that it exits 0 (within
// 30 s, a bound should it never stop).
func stopRun(t *testing.T, cancel func(), code <-chan int, stderr fmt.Stringer) {
	t.Helper()
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit status %d, want 0; stderr:\n%s", c, stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("webhook did not stop within 30s of cancellation")
	}
}
