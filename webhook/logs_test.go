package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
	"github.com/polyswarm/psengine/webhook"
)

// A request chooses its bounty id, its delivery id and what its errors
// quote: none of it reaches a log record in full. A 500 KB bounty id,
// accepted, repeated, refused (queue full) and malformed, and a 60 KB
// delivery id, log records of a few hundred bytes each.
func TestUntrustedStringsAreCutInLogs(t *testing.T) {
	hugeID := strings.Repeat("7", 500<<10)
	var logs psenginetest.SyncBuffer
	full := false
	seen := map[string]bool{}
	h, err := webhook.NewHandler(webhook.SubmitFunc(func(_ context.Context, j broker.Job) error {
		switch {
		case full:
			return psengine.ErrQueueFull
		case seen[j.ID]:
			return fmt.Errorf("%w: job %s", psengine.ErrDuplicate, j.ID)
		}
		seen[j.ID] = true
		return nil
	}), webhook.WithSecret(secret), webhook.WithMaxBody(1<<20),
		webhook.WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	body := bountyJSON(t, hugeID, []byte("content"))
	for _, tt := range []struct {
		name string
		r    *http.Request
		full bool
		code int
	}{
		{"accepted", signed("bounty", "d-1", body), false, http.StatusAccepted},
		{"repeated", signed("bounty", "d-1", body), false, http.StatusOK},
		{"queue full", signed("bounty", "d-2", body), true, http.StatusServiceUnavailable},
		{"malformed id", signed("bounty", "d-3", []byte(strings.Replace(string(body), `:`+hugeID, `:-`+hugeID, 1))), false, http.StatusBadRequest},
		{"huge delivery id, unsigned", post(body, webhook.HeaderEvent, "bounty", webhook.HeaderDelivery, strings.Repeat("d", 60<<10)), false, http.StatusBadRequest},
	} {
		full = tt.full
		if got := serve(t, h, tt.r); got.Code != tt.code {
			t.Errorf("%s: %d, want %d", tt.name, got.Code, tt.code)
		}
	}

	records := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(records) != 5 {
		t.Errorf("%d log records, want one per request (5):\n%.2000s", len(records), logs.String())
	}
	for _, rec := range records {
		if len(rec) > 2048 {
			t.Errorf("a log record of %d bytes: %.300s...", len(rec), rec)
		}
		var fields map[string]any
		if err := json.Unmarshal([]byte(rec), &fields); err != nil {
			t.Errorf("record %.300s: %v", rec, err)
		}
	}
	for _, want := range []string{`"bounty":"` + hugeID[:256] + `...[512000 bytes]"`, `...[61440 bytes]"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %.80q...:\n%.3000s", want, logs.String())
		}
	}
}
