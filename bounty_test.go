package psengine_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/bid"
)

const sha = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"

func mustID(t *testing.T, digits string) psengine.BountyID {
	t.Helper()
	id, err := psengine.NumberID(digits)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

var bountyCmp = cmp.Options{
	cmp.AllowUnexported(psengine.BountyID{}),
}

func TestParseBountyShapes(t *testing.T) {
	exp := time.Date(2021, 2, 19, 10, 13, 47, 36168000, time.UTC)
	epoch := time.Unix(0, 0).UTC()
	base := psengine.Bounty{
		ID:           mustID(t, "1"),
		ArtifactType: psengine.FileArtifact,
		ArtifactURI:  "https://example.test/a",
		Rules:        bid.DefaultRules,
		Phase:        psengine.Assertion,
	}
	with := func(f func(*psengine.Bounty)) psengine.Bounty { b := base; f(&b); return b }
	tests := []struct {
		name string
		in   string
		want psengine.Bounty
	}{
		{"minimal", `{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a"}`, base},
		{"id beyond 2^53 kept exactly",
			`{"id":123456789012345678901234567890,"artifact_type":"file","artifact_uri":"https://example.test/a"}`,
			with(func(b *psengine.Bounty) { b.ID = mustID(t, "123456789012345678901234567890") })},
		{"uuid id",
			`{"id":"6f1c2a7e-1d2b-4c3d-9e8f-0a1b2c3d4e5f","artifact_type":"file","artifact_uri":"https://example.test/a"}`,
			with(func(b *psengine.Bounty) { b.ID = psengine.StringID("6f1c2a7e-1d2b-4c3d-9e8f-0a1b2c3d4e5f") })},
		{"legacy guid and artifact_url",
			`{"guid":"abc","artifact_type":"file","artifact_url":"https://example.test/a"}`,
			with(func(b *psengine.Bounty) { b.ID = psengine.StringID("abc") })},
		{"FILE casing", `{"id":1,"artifact_type":"FILE","artifact_uri":"https://example.test/a"}`, base},
		{"File casing", `{"id":1,"artifact_type":"File","artifact_uri":"https://example.test/a"}`, base},
		{"URL casing", `{"id":1,"artifact_type":"URL","artifact_uri":"https://example.test/a"}`,
			with(func(b *psengine.Bounty) { b.ArtifactType = psengine.URLArtifact })},
		{"Url casing", `{"id":1,"artifact_type":"Url","artifact_uri":"https://example.test/a"}`,
			with(func(b *psengine.Bounty) { b.ArtifactType = psengine.URLArtifact })},
		{"expiration without zone is UTC",
			`{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","expiration":"2021-02-19T10:13:47.036168"}`,
			with(func(b *psengine.Bounty) { b.Expiration = exp })},
		{"expiration +0000",
			`{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","expiration":"1970-01-01T00:00:00+0000"}`,
			with(func(b *psengine.Bounty) { b.Expiration = epoch })},
		{"expiration +00:00",
			`{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","expiration":"2021-02-19T10:13:47.036168+00:00"}`,
			with(func(b *psengine.Bounty) { b.Expiration = exp })},
		{"expiration Z",
			`{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","expiration":"2021-02-19T10:13:47.036168Z"}`,
			with(func(b *psengine.Bounty) { b.Expiration = exp })},
		{"expiration in another zone",
			`{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","expiration":"2021-02-19T12:13:47.036168+02:00"}`,
			with(func(b *psengine.Bounty) { b.Expiration = exp })},
		{"sha256 and mimetype under metadata, unknown fields ignored",
			`{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","metadata":{"sha256":"` + strings.ToUpper(sha) + `","mimetype":"text/plain","x":[1]},"brand_new":{"a":1}}`,
			with(func(b *psengine.Bounty) {
				b.SHA256, b.MIMEType = sha, "text/plain"
				b.Metadata = json.RawMessage(`{"sha256":"` + strings.ToUpper(sha) + `","mimetype":"text/plain","x":[1]}`)
			})},
		{"null sha256 and mimetype and metadata",
			`{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","sha256":null,"mimetype":null,"metadata":null}`, base},
		{"rules, phase, duration as string, tasked_at, response_url",
			`{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","rules":{"min_allowed_bid":62500000000000000,"max_allowed_bid":1000000000000000000},"phase":"arbitration","duration":"30","tasked_at":"2021-02-19T10:13:47.036168","response_url":"https://ps.test/r/1"}`,
			with(func(b *psengine.Bounty) {
				b.Rules = bid.Rules{Min: bid.NCT / 16, Max: bid.NCT}
				b.Phase = psengine.Arbitration
				b.Duration = 30 * time.Second
				b.TaskedAt = exp
				b.ResponseURL = "https://ps.test/r/1"
			})},
		{"duration as number", `{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","duration":1.5}`,
			with(func(b *psengine.Bounty) { b.Duration = 1500 * time.Millisecond })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := psengine.ParseBounty([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParseBounty: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, bountyCmp); diff != "" {
				t.Errorf("ParseBounty mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseBountyErrors(t *testing.T) {
	tests := []struct {
		name, in, field string
	}{
		{"not json", `{"id":`, ""},
		{"missing id", `{"artifact_type":"file","artifact_uri":"x"}`, "id"},
		{"float id", `{"id":1.5,"artifact_type":"file","artifact_uri":"x"}`, "id"},
		{"negative id", `{"id":-1,"artifact_type":"file","artifact_uri":"x"}`, "id"},
		{"empty string id", `{"id":"","artifact_type":"file","artifact_uri":"x"}`, "id"},
		{"bad casing", `{"id":1,"artifact_type":"fIlE","artifact_uri":"x"}`, "artifact_type"},
		{"unknown type", `{"id":1,"artifact_type":"blob","artifact_uri":"x"}`, "artifact_type"},
		{"missing uri", `{"id":1,"artifact_type":"file"}`, "artifact_uri"},
		{"bad sha", `{"id":1,"artifact_type":"file","artifact_uri":"x","sha256":"abc"}`, "sha256"},
		{"bad expiration", `{"id":1,"artifact_type":"file","artifact_uri":"x","expiration":"tomorrow"}`, "expiration"},
		{"bad phase", `{"id":1,"artifact_type":"file","artifact_uri":"x","phase":"voting"}`, "phase"},
		{"bad response url", `{"id":1,"artifact_type":"file","artifact_uri":"x","response_url":"ftp://x"}`, "response_url"},
		{"min above max", `{"id":1,"artifact_type":"file","artifact_uri":"x","rules":{"min_allowed_bid":5,"max_allowed_bid":4}}`, "rules"},
		{"metadata not an object", `{"id":1,"artifact_type":"file","artifact_uri":"x","metadata":[1]}`, "metadata"},
		{"wrong type", `{"id":1,"artifact_type":5,"artifact_uri":"x"}`, "artifact_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := psengine.ParseBounty([]byte(tt.in))
			if !errors.Is(err, psengine.ErrMalformedBounty) {
				t.Fatalf("ParseBounty(%s) = %v, want ErrMalformedBounty", tt.in, err)
			}
			var be *psengine.BountyError
			if !errors.As(err, &be) || be.Field != tt.field {
				t.Errorf("error %v: field %q, want %q", err, be.Field, tt.field)
			}
		})
	}
}

// TestBountyRoundTrip: what we write we read back identically, ids exactly.
func TestBountyRoundTrip(t *testing.T) {
	for _, in := range []string{
		`{"id":123456789012345678901234567890,"artifact_type":"URL","artifact_uri":"https://x.test/","expiration":"2021-02-19T10:13:47.036168","phase":"arbitration","metadata":{"k":"v"}}`,
		`{"id":"a-b","artifact_type":"file","artifact_uri":"data:,x","sha256":"` + sha + `","rules":{"min_allowed_bid":"1","max_allowed_bid":2e18},"duration":7}`,
	} {
		b, err := psengine.ParseBounty([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		out, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		again, err := psengine.ParseBounty(out)
		if err != nil {
			t.Fatalf("re-parse %s: %v", out, err)
		}
		if diff := cmp.Diff(b, again, bountyCmp); diff != "" {
			t.Errorf("round trip mismatch (-first +second):\n%s", diff)
		}
		if b.ID.IsNumber() && !strings.HasPrefix(string(out), `{"id":123456789012345678901234567890,`) {
			t.Errorf("integer id not echoed exactly: %s", out)
		}
	}
}

func TestLocalBounty(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := psengine.LocalBounty(psengine.FileArtifact, "x", sha, "text/plain", now, time.Minute)
	b := psengine.LocalBounty(psengine.FileArtifact, "y", sha, "text/plain", now, time.Minute)
	c := psengine.LocalBounty(psengine.URLArtifact, "x", sha, "text/plain", now, time.Minute)
	if a.ID != b.ID {
		t.Errorf("same content, different ids: %v %v", a.ID, b.ID)
	}
	if a.ID == c.ID {
		t.Errorf("different types, same id %v", a.ID)
	}
	if len(a.ID.String()) != 36 || a.ID.String()[14] != '8' {
		t.Errorf("id %q is not a version 8 UUID", a.ID)
	}
	if a.Rules != bid.DefaultRules || !a.Expiration.Equal(now.Add(time.Minute)) || a.Phase != psengine.Assertion {
		t.Errorf("local bounty %+v", a)
	}
	if err := a.Validate(); err != nil {
		t.Error(err)
	}
}

func FuzzParseBounty(f *testing.F) {
	f.Add([]byte(`{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","expiration":"2021-02-19T10:13:47.036168"}`))
	f.Add([]byte(`{"guid":"x","artifact_type":"URL","artifact_url":"u","metadata":{"sha256":null},"rules":{"min_allowed_bid":1e18}}`))
	f.Add([]byte(`{"id":99999999999999999999,"artifact_type":"File","artifact_uri":"data:,x","duration":"3","phase":"Arbitration"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := psengine.ParseBounty(data)
		if err != nil {
			if !errors.Is(err, psengine.ErrMalformedBounty) {
				t.Fatalf("error %v is not ErrMalformedBounty", err)
			}
			return
		}
		if err := b.Validate(); err != nil {
			t.Fatalf("parsed bounty does not validate: %v", err)
		}
		out, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := psengine.ParseBounty(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		if diff := cmp.Diff(b, again, bountyCmp); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
