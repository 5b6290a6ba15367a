package psengine_test

import (
	"bytes"
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

// sameJSON compares raw JSON as json.Marshal writes it (compact, HTML
// escaped): metadata is kept as received and written back in that form.
var sameJSON = cmp.Comparer(func(a, b json.RawMessage) bool {
	ca, errA := json.Marshal(a)
	cb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ca, cb)
})

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
		{"not an object", `[1,2]`, ""},
		{"a string, not an object", `"x"`, ""},
		{"trailing garbage", `{"id":1,"artifact_uri":"x"} x`, ""},
		{"null", `null`, "id"},
		{"missing id", `{"artifact_type":"file","artifact_uri":"x"}`, "id"},
		{"null id and guid", `{"id":null,"guid":null,"artifact_type":"file","artifact_uri":"x"}`, "id"},
		{"blank string id", `{"id":" ","artifact_type":"file","artifact_uri":"x"}`, "id"},
		{"object id", `{"id":{},"artifact_type":"file","artifact_uri":"x"}`, "id"},
		{"float id", `{"id":1.5,"artifact_type":"file","artifact_uri":"x"}`, "id"},
		{"negative id", `{"id":-1,"artifact_type":"file","artifact_uri":"x"}`, "id"},
		{"empty string id", `{"id":"","artifact_type":"file","artifact_uri":"x"}`, "id"},
		{"bad casing", `{"id":1,"artifact_type":"fIlE","artifact_uri":"x"}`, "artifact_type"},
		{"unknown type", `{"id":1,"artifact_type":"blob","artifact_uri":"x"}`, "artifact_type"},
		{"missing uri", `{"id":1,"artifact_type":"file"}`, "artifact_uri"},
		{"empty uri", `{"id":1,"artifact_type":"file","artifact_uri":"","artifact_url":null}`, "artifact_uri"},
		{"null uri", `{"id":1,"artifact_type":"file","artifact_uri":null}`, "artifact_uri"},
		{"bad sha", `{"id":1,"artifact_type":"file","artifact_uri":"x","sha256":"abc"}`, "sha256"},
		{"bad expiration", `{"id":1,"artifact_type":"file","artifact_uri":"x","expiration":"tomorrow"}`, "expiration"},
		{"bad phase", `{"id":1,"artifact_type":"file","artifact_uri":"x","phase":"voting"}`, "phase"},
		{"bad response url", `{"id":1,"artifact_type":"file","artifact_uri":"x","response_url":"ftp://x"}`, "response_url"},
		{"min above max", `{"id":1,"artifact_type":"file","artifact_uri":"x","rules":{"min_allowed_bid":5,"max_allowed_bid":4}}`, "rules"},
		{"metadata not an object", `{"id":1,"artifact_type":"file","artifact_uri":"x","metadata":[1]}`, "metadata"},
		{"wrong type", `{"id":1,"artifact_type":5,"artifact_uri":"x"}`, "artifact_type"},
		{"uri of the wrong type", `{"id":1,"artifact_type":"file","artifact_uri":["x"]}`, "artifact_uri"},
		{"bad duration", `{"id":1,"artifact_type":"file","artifact_uri":"x","duration":"soon"}`, "duration"},
		{"bad tasked_at", `{"id":1,"artifact_type":"file","artifact_uri":"x","tasked_at":"yesterday"}`, "tasked_at"},
		{"tasked_at beyond float64", `{"id":1,"artifact_type":"file","artifact_uri":"x","tasked_at":-1e400}`, "tasked_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := psengine.ParseBounty([]byte(tt.in))
			if !errors.Is(err, psengine.ErrMalformedBounty) {
				t.Fatalf("ParseBounty(%s) = %v, want ErrMalformedBounty", tt.in, err)
			}
			be, ok := errors.AsType[*psengine.BountyError](err)
			if !ok || be.Field != tt.field {
				t.Fatalf("error %v: want a *BountyError for field %q", err, tt.field)
			}
			if be.Reason == "" || (tt.field != "" && !strings.Contains(err.Error(), tt.field+": ")) {
				t.Errorf("error %q does not say which field and why", err)
			}
		})
	}
}

// TestBountyRoundTrip: what we write we read back identically, ids exactly.
func TestBountyRoundTrip(t *testing.T) {
	for _, in := range []string{
		`{"id":123456789012345678901234567890,"artifact_type":"URL","artifact_uri":"https://x.test/","expiration":"2021-02-19T10:13:47.036168","phase":"arbitration","metadata":{"k":"v"}}`,
		`{"id":"a-b","artifact_type":"file","artifact_uri":"data:,x","sha256":"` + sha + `","rules":{"min_allowed_bid":"1","max_allowed_bid":2e18},"duration":7}`,
		`{"id":"7","artifact_type":"file","artifact_uri":"data:,x","metadata": { "k" : [ "<v>" , 1 ] } }`,
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
		if diff := cmp.Diff(b, again, bountyCmp, sameJSON); diff != "" {
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

// syntaxCases are inputs at the corners of JSON syntax and of encoding/json's
// decoding (case-folded keys, repeated keys, escapes, bad UTF-8, depth).
var syntaxCases = []string{
	`{"id":1,"artifact_type":"FILE","artifact_uri":"https://x/a","rules":{"min_allowed_bid":1,"max_allowed_bid":2}}`,
	`{"ID":"a","Artifact_Type":"url","ARTIFACT_URI":"u","\u0073ha256":"ab","ſha256":"cd","mimetype":null}`,
	`{"id":1,"artifact_uri":"u","rules":{"min_allowed_bid":1},"rules":{"max_allowed_bid":2}}`,
	`{"id":1,"artifact_uri":"u","phase":"\ud83d\ude00 \ud83d x \ude00 \\ \/ \b\f\n\r\t \u00e9"}`,
	"{\"id\":1,\"artifact_uri\":\"bad \xff utf8 \xe2\x82\"}",
	`{"artifact_type":[1,{"a":null}]}`, `{"rules":true}`, `[1,2]`, `"x"`, `5`, `true`,
	` { "id" : 1 , "artifact_uri" : "u" , "metadata" : { "a" : [ 1 , -2.5e+3 , "x<&>\u2028" ] } , "expiration" : 1.5 } `,
	`{"id":1} x`, `{"id":1,}`, `{"id"}`, `{"id":}`, `{"id":01}`, `{"id":-}`, `{"id":1.}`, `{"id":1e}`,
	`{"id":"\x"}`, `{"id":"\u12"}`, "{\"id\":\"a\x01\"}", `{"id":tru}`, `{`, ``, `   `,
	`{"a":[}`, `{"a":[1 2]}`, `{"a":{"b" 1}}`, `{1:2}`,
	`{"artifact_url":"https://y","guid":"g","sha256":"` + strings.Repeat("AB", 32) + `"}`,
	// encoding/json's depth limit (10,000), just within and just over.
	`{"id":1,"artifact_uri":"u","metadata":{"a":` + strings.Repeat("[", 9998) + strings.Repeat("]", 9998) + `}}`,
	`{"id":1,"artifact_uri":"u","metadata":{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}}`,
}

// FuzzParseBounty: ParseBounty agrees with encoding/json on what is JSON, and
// what it accepts validates and survives a round trip through MarshalJSON.
func FuzzParseBounty(f *testing.F) {
	f.Add([]byte(`{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","expiration":"2021-02-19T10:13:47.036168"}`))
	f.Add([]byte(`{"guid":"x","artifact_type":"URL","artifact_url":"u","metadata":{"sha256":null},"rules":{"min_allowed_bid":1e18}}`))
	f.Add([]byte(`{"id":99999999999999999999,"artifact_type":"File","artifact_uri":"data:,x","duration":"3","phase":"Arbitration"}`))
	f.Add([]byte(`null`))
	for _, c := range syntaxCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := psengine.ParseBounty(data)
		if err != nil {
			be, ok := errors.AsType[*psengine.BountyError](err)
			if !ok || !errors.Is(err, psengine.ErrMalformedBounty) {
				t.Fatalf("error %v is not a *BountyError wrapping ErrMalformedBounty", err)
			}
			// Only input that is not a JSON object (null reads as {}) fails
			// without naming a field.
			trimmed := bytes.TrimSpace(data)
			object := json.Valid(data) && (trimmed[0] == '{' || string(trimmed) == "null")
			if (be.Field != "") != object {
				t.Fatalf("%q: error %v; json.Valid = %v", data, err, json.Valid(data))
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("%q: accepted, but encoding/json says it is not JSON", data)
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
		if diff := cmp.Diff(b, again, bountyCmp, sameJSON); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
