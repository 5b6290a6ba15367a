package webhook_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine/webhook"
)

// FuzzHandler feeds the handler random bodies and headers. It must never
// panic, answer only the documented statuses, and never hand a bounty to
// the Submitter unless the request was signed with the secret.
func FuzzHandler(f *testing.F) {
	body := []byte(`{"id":1,"artifact_type":"file","artifact_uri":"https://x.test/a","expiration":"2030-01-01T00:00:00Z"}`)
	sig := webhook.Sign(secret, body)
	f.Add("POST", body, "bounty", sig, "d-1", true)
	f.Add("POST", body, "BOUNTY", sig, "", false)
	f.Add("POST", []byte{}, "ping", webhook.Sign(secret, nil), "d-2", true)
	f.Add("POST", body, "bounty", "", "d-3", true)
	f.Add("POST", body, "bounty", sig[:10], "d-4", true)
	f.Add("POST", []byte(`{"id":"x"`), "bounty", webhook.Sign(secret, []byte(`{"id":"x"`)), "d-5", true)
	f.Add("POST", bytes.Repeat([]byte("a"), 5000), "bounty", "00", "d-6", false)
	f.Add("GET", []byte(nil), "", "", "", true)
	f.Add("DELETE", body, "bounty", sig, "d-7", true)
	f.Add("POST", []byte(`{"guid":"u","artifact_type":"URL","artifact_url":"data:,x","phase":"arbitration"}`), "bounty", "", "", true)

	f.Fuzz(func(t *testing.T, method string, body []byte, event, signature, delivery string, knownLength bool) {
		if !validMethod(method) {
			t.Skip()
		}
		var submitted []broker.Job
		sub := webhook.SubmitFunc(func(_ context.Context, job broker.Job) error {
			submitted = append(submitted, job)
			return nil
		})
		h, err := webhook.NewHandler(sub, webhook.WithSecret(secret), webhook.WithMaxBody(4096))
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(method, "/", bytes.NewReader(body))
		if !knownLength {
			r.ContentLength = -1
		}
		for name, v := range map[string]string{webhook.HeaderEvent: event, webhook.HeaderSignature: signature, webhook.HeaderDelivery: delivery} {
			if v != "" {
				r.Header[name] = []string{v}
			}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)

		switch w.Code {
		case 200, 202, 400, 401, 405, 413:
		default:
			t.Fatalf("status %d", w.Code)
		}
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		signed := strings.EqualFold(signature, hex.EncodeToString(mac.Sum(nil)))
		if len(submitted) > 0 && (!signed || method != http.MethodPost) {
			t.Fatalf("unsigned request reached the Submitter: sig %q over %q", signature, body)
		}
		if w.Code == 202 && len(submitted) != 1 {
			t.Fatalf("202 with %d submissions", len(submitted))
		}
		if w.Code != 202 && len(submitted) != 0 {
			t.Fatalf("status %d with %d submissions", w.Code, len(submitted))
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range []byte(m) {
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`()<>@,;:\"/[]?={}`), c) >= 0 {
			return false
		}
	}
	return true
}
