package protocol_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/polyswarm/psengine/bid"
	"github.com/polyswarm/psengine/protocol"
)

const sha = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"

func mustID(t *testing.T, digits string) protocol.BountyID {
	t.Helper()
	id, err := protocol.NumberID(digits)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

var bountyCmp = cmp.Options{
	cmp.AllowUnexported(protocol.BountyID{}),
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
	base := protocol.Bounty{
		ID:           mustID(t, "1"),
		ArtifactType: protocol.FileArtifact,
		ArtifactURI:  "https://example.test/a",
		Rules:        bid.DefaultRules,
		Phase:        protocol.Assertion,
	}
	with := func(f func(*protocol.Bounty)) protocol.Bounty { b := base; f(&b); return b }
	tests := []struct {
		name string
		in   string
		want protocol.Bounty
	}{
		{"minimal", `{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a"}`, base},
		{"id beyond 2^53 kept exactly",
			`{"id":123456789012345678901234567890,"artifact_type":"file","artifact_uri":"https://example.test/a"}`,
			with(func(b *protocol.Bounty) { b.ID = mustID(t, "123456789012345678901234567890") })},
		{"uuid id",
			`{"id":"6f1c2a7e-1d2b-4c3d-9e8f-0a1b2c3d4e5f","artifact_type":"file","artifact_uri":"https://example.test/a"}`,
			with(func(b *protocol.Bounty) { b.ID = protocol.StringID("6f1c2a7e-1d2b-4c3d-9e8f-0a1b2c3d4e5f") })},
		{"legacy guid and artifact_url",
			`{"guid":"abc","artifact_type":"file","artifact_url":"https://example.test/a"}`,
			with(func(b *protocol.Bounty) { b.ID = protocol.StringID("abc") })},
		{"FILE casing", `{"id":1,"artifact_type":"FILE","artifact_uri":"https://example.test/a"}`, base},
		{"File casing", `{"id":1,"artifact_type":"File","artifact_uri":"https://example.test/a"}`, base},
		{"URL casing", `{"id":1,"artifact_type":"URL","artifact_uri":"https://example.test/a"}`,
			with(func(b *protocol.Bounty) { b.ArtifactType = protocol.URLArtifact })},
		{"Url casing", `{"id":1,"artifact_type":"Url","artifact_uri":"https://example.test/a"}`,
			with(func(b *protocol.Bounty) { b.ArtifactType = protocol.URLArtifact })},
		{"expiration without zone is UTC",
			`{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","expiration":"2021-02-19T10:13:47.036168"}`,
			with(func(b *protocol.Bounty) { b.Expiration = exp })},
		{"expiration +0000",
			`{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","expiration":"1970-01-01T00:00:00+0000"}`,
			with(func(b *protocol.Bounty) { b.Expiration = epoch })},
		{"expiration +00:00",
			`{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","expiration":"2021-02-19T10:13:47.036168+00:00"}`,
			with(func(b *protocol.Bounty) { b.Expiration = exp })},
		{"expiration Z",
			`{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","expiration":"2021-02-19T10:13:47.036168Z"}`,
			with(func(b *protocol.Bounty) { b.Expiration = exp })},
		{"expiration in another zone",
			`{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","expiration":"2021-02-19T12:13:47.036168+02:00"}`,
			with(func(b *protocol.Bounty) { b.Expiration = exp })},
		{"sha256 and mimetype under metadata, unknown fields ignored",
			`{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","metadata":{"sha256":"` + strings.ToUpper(sha) + `","mimetype":"text/plain","x":[1]},"brand_new":{"a":1}}`,
			with(func(b *protocol.Bounty) {
				b.SHA256, b.MIMEType = sha, "text/plain"
				b.Metadata = json.RawMessage(`{"sha256":"` + strings.ToUpper(sha) + `","mimetype":"text/plain","x":[1]}`)
			})},
		{"null sha256 and mimetype and metadata",
			`{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","sha256":null,"mimetype":null,"metadata":null}`, base},
		{"rules, phase, duration as string, tasked_at, response_url",
			`{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","rules":{"min_allowed_bid":62500000000000000,"max_allowed_bid":1000000000000000000},"phase":"arbitration","duration":"30","tasked_at":"2021-02-19T10:13:47.036168","response_url":"https://ps.test/r/1"}`,
			with(func(b *protocol.Bounty) {
				b.Rules = bid.Rules{Min: bid.NCT / 16, Max: bid.NCT}
				b.Phase = protocol.Arbitration
				b.Duration = 30 * time.Second
				b.TaskedAt = exp
				b.ResponseURL = "https://ps.test/r/1"
			})},
		{"duration as number", `{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","duration":1.5}`,
			with(func(b *protocol.Bounty) { b.Duration = 1500 * time.Millisecond })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := protocol.ParseBounty([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParseBounty: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, bountyCmp); diff != "" {
				t.Errorf("ParseBounty mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseBountyLiberal: the shapes PolySwarm's own reference code accepts
// (issue 12) parse, into the bounty they mean, and that bounty validates.
func TestParseBountyLiberal(t *testing.T) {
	base := protocol.Bounty{
		ID:           mustID(t, "1"),
		ArtifactType: protocol.FileArtifact,
		ArtifactURI:  "https://example.test/a",
		Rules:        bid.DefaultRules,
		Phase:        protocol.Assertion,
	}
	with := func(f func(*protocol.Bounty)) protocol.Bounty { b := base; f(&b); return b }
	arbitration := with(func(b *protocol.Bounty) { b.Phase = protocol.Arbitration })
	url := with(func(b *protocol.Bounty) { b.ArtifactType = protocol.URLArtifact })
	rules := func(r bid.Rules) protocol.Bounty { return with(func(b *protocol.Bounty) { b.Rules = r }) }
	id := func(id protocol.BountyID) protocol.Bounty { return with(func(b *protocol.Bounty) { b.ID = id }) }
	const uri = `"artifact_uri":"https://example.test/a"`
	tests := []struct {
		name, fields string // fields go beside id and artifact_uri
		want         protocol.Bounty
	}{
		{"phase missing", ``, base},
		{"phase null", `"phase":null`, base},
		{"phase empty", `"phase":""`, base},
		{"phase upper case", `"phase":"ASSERTION"`, base},
		{"phase mixed case", `"phase":"Arbitration"`, arbitration},
		{"phase assertion_window", `"phase":"assertion_window"`, base},
		{"phase arbitration_window", `"phase":"arbitration_window"`, arbitration},
		{"phase Arbitration_WINDOW", `"phase":"Arbitration_WINDOW"`, arbitration},

		{"rules missing", ``, base},
		{"rules null", `"rules":null`, base},
		{"rules {}", `"rules":{}`, base},
		{"rules []", `"rules":[]`, base},
		{"rules [ ]", `"rules":[ ]`, base},
		{"rules { }", `"rules":{ }`, base},
		{"rules with null amounts", `"rules":{"min_allowed_bid":null,"max_allowed_bid":null}`, base},
		{"rules with unknown fields only", `"rules":{"currency":"nct"}`, base},
		{"rules with min only", `"rules":{"min_allowed_bid":1000}`, rules(bid.Rules{Min: 1000, Max: bid.DefaultRules.Max})},
		{"rules with min only, above the default max", `"rules":{"min_allowed_bid":2000000000000000000}`,
			rules(bid.Rules{Min: 2 * bid.NCT, Max: 2 * bid.NCT})},
		{"rules with max only", `"rules":{"max_allowed_bid":2000000000000000000}`, rules(bid.Rules{Min: bid.DefaultRules.Min, Max: 2 * bid.NCT})},
		{"rules with max only, below the default min", `"rules":{"max_allowed_bid":1000}`, rules(bid.Rules{Min: 1000, Max: 1000})},

		{"expiration missing", ``, base},
		{"expiration null", `"expiration":null`, base},
		{"expiration empty", `"expiration":""`, base},
		{"expiration unreadable", `"expiration":"tomorrow"`, base},
		{"expiration of another JSON type", `"expiration":{"at":"noon"}`, base},
		{"expiration out of range", `"expiration":1e300`, base},
		{"expiration beyond float64", `"expiration":1e400`, base},
		{"expiration in the year 0", `"expiration":"0000-01-01T00:00:00Z"`, base},
		{"expiration in seconds since the epoch", `"expiration":1613729627.5`,
			with(func(b *protocol.Bounty) { b.Expiration = time.Date(2021, 2, 19, 10, 13, 47, 5e8, time.UTC) })},

		{"artifact_type missing", ``, base},
		{"artifact_type null", `"artifact_type":null`, base},
		{"artifact_type empty", `"artifact_type":""`, base},
		{"artifact_type fIlE", `"artifact_type":"fIlE"`, base},
		{"artifact_type uRL", `"artifact_type":"uRL"`, url},

		{"unknown fields", `"brand_new":{"a":[1,null]},"other":7`, base},
		{"keys in another case", `"Phase":"arbitration","ARTIFACT_TYPE":"url"`,
			with(func(b *protocol.Bounty) { b.Phase, b.ArtifactType = protocol.Arbitration, protocol.URLArtifact })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := `{"id":1,` + uri
			if tt.fields != "" {
				in += "," + tt.fields
			}
			got, err := protocol.ParseBounty([]byte(in + "}"))
			if err != nil {
				t.Fatalf("ParseBounty(%s): %v", in, err)
			}
			if diff := cmp.Diff(tt.want, got, bountyCmp); diff != "" {
				t.Errorf("ParseBounty(%s) mismatch (-want +got):\n%s", in, diff)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}

	// Ids: JSON numbers of any size, numeric strings and other strings, each
	// echoed back as it came.
	for _, tt := range []struct {
		in, echo string
		want     protocol.Bounty
	}{
		{`1`, `1`, base},
		{`340282366920938463463374607431768211457`, `340282366920938463463374607431768211457`,
			id(mustID(t, "340282366920938463463374607431768211457"))},
		{`"12345"`, `"12345"`, id(protocol.StringID("12345"))},
		{`"6f1c2a7e-1d2b-4c3d-9e8f-0a1b2c3d4e5f"`, `"6f1c2a7e-1d2b-4c3d-9e8f-0a1b2c3d4e5f"`,
			id(protocol.StringID("6f1c2a7e-1d2b-4c3d-9e8f-0a1b2c3d4e5f"))},
		{`" spaced "`, `" spaced "`, id(protocol.StringID(" spaced "))},
	} {
		got, err := protocol.ParseBounty([]byte(`{"id":` + tt.in + `,` + uri + `}`))
		if err != nil {
			t.Fatalf("id %s: %v", tt.in, err)
		}
		if diff := cmp.Diff(tt.want, got, bountyCmp); diff != "" {
			t.Errorf("id %s: mismatch (-want +got):\n%s", tt.in, diff)
		}
		out, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(out), `{"id":`+tt.echo+`,`) {
			t.Errorf("id %s echoed as %s", tt.in, out)
		}
	}
}

// TestValidatePhase: Validate agrees with ParseBounty that no phase is an
// assertion, and refuses what ParseBounty refuses.
func TestValidatePhase(t *testing.T) {
	b := protocol.Bounty{ID: mustID(t, "1"), ArtifactType: protocol.FileArtifact, ArtifactURI: "x"}
	if err := b.Validate(); err != nil || b.IsVote() {
		t.Errorf("phase \"\": Validate = %v, IsVote = %v; want an assertion", err, b.IsVote())
	}
	out, err := json.Marshal(b)
	if err != nil || !strings.Contains(string(out), `"phase":"assertion"`) {
		t.Errorf("phase \"\" written as %s (%v)", out, err)
	}
	b.Phase = "voting"
	if err := b.Validate(); !errors.Is(err, protocol.ErrMalformedBounty) {
		t.Errorf("phase voting: Validate = %v", err)
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
		{"blank string id", `{"id":" ","artifact_uri":"x"}`, "id"},
		{"object id", `{"id":{},"artifact_uri":"x"}`, "id"},
		{"float id", `{"id":1.5,"artifact_type":"file","artifact_uri":"x"}`, "id"},
		{"negative id", `{"id":-1,"artifact_type":"file","artifact_uri":"x"}`, "id"},
		{"empty string id", `{"id":"","artifact_type":"file","artifact_uri":"x"}`, "id"},
		{"unknown type", `{"id":1,"artifact_type":"blob","artifact_uri":"x"}`, "artifact_type"},
		{"missing uri", `{"id":1,"artifact_type":"file"}`, "artifact_uri"},
		{"empty uri", `{"id":1,"artifact_uri":"","artifact_url":null}`, "artifact_uri"},
		{"null uri", `{"id":1,"artifact_uri":null}`, "artifact_uri"},
		{"bad phase", `{"id":1,"artifact_type":"file","artifact_uri":"x","phase":"voting"}`, "phase"},
		{"bare _window phase", `{"id":1,"artifact_uri":"x","phase":"_window"}`, "phase"},
		{"rules a non-empty array", `{"id":1,"artifact_uri":"x","rules":[1]}`, "rules"},
		{"rules a string", `{"id":1,"artifact_uri":"x","rules":"x"}`, "rules"},
		{"negative min", `{"id":1,"artifact_uri":"x","rules":{"min_allowed_bid":-1}}`, "rules"},
		{"bad response url", `{"id":1,"artifact_type":"file","artifact_uri":"x","response_url":"ftp://x"}`, "response_url"},
		{"min above max", `{"id":1,"artifact_type":"file","artifact_uri":"x","rules":{"min_allowed_bid":5,"max_allowed_bid":4}}`, "rules"},
		{"metadata not an object", `{"id":1,"artifact_type":"file","artifact_uri":"x","metadata":[1]}`, "metadata"},
		{"wrong type", `{"id":1,"artifact_type":5,"artifact_uri":"x"}`, "artifact_type"},
		{"wrong type under a key in another case", `{"id":1,"Artifact_TYPE":5,"artifact_uri":"x"}`, "artifact_type"},
		{"uri of the wrong type", `{"id":1,"artifact_uri":["x"]}`, "artifact_uri"},
		{"bad duration", `{"id":1,"artifact_uri":"x","duration":"soon"}`, "duration"},
		{"bad tasked_at", `{"id":1,"artifact_uri":"x","tasked_at":"yesterday"}`, "tasked_at"},
		{"tasked_at beyond float64", `{"id":1,"artifact_uri":"x","tasked_at":-1e400}`, "tasked_at"},
		// Years RFC 3339 cannot write: a parsed bounty must marshal to what parses again.
		{"tasked_at in the year 0", `{"id":1,"artifact_uri":"x","tasked_at":"0000-06-01T00:00:00Z"}`, "tasked_at"},
		{"tasked_at before the year 1, in seconds", `{"id":1,"artifact_uri":"x","tasked_at":-9e10}`, "tasked_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := protocol.ParseBounty([]byte(tt.in))
			if !errors.Is(err, protocol.ErrMalformedBounty) {
				t.Fatalf("ParseBounty(%s) = %v, want ErrMalformedBounty", tt.in, err)
			}
			be, ok := errors.AsType[*protocol.BountyError](err)
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
		`{"id":"7","artifact_uri":"data:,x","metadata": { "k" : [ "<v>" , 1 ] } }`,
	} {
		b, err := protocol.ParseBounty([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		out, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		again, err := protocol.ParseBounty(out)
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
	a := protocol.LocalBounty(protocol.FileArtifact, "x", sha, "text/plain", now, time.Minute)
	b := protocol.LocalBounty(protocol.FileArtifact, "y", sha, "text/plain", now, time.Minute)
	c := protocol.LocalBounty(protocol.URLArtifact, "x", sha, "text/plain", now, time.Minute)
	if a.ID != b.ID {
		t.Errorf("same content, different ids: %v %v", a.ID, b.ID)
	}
	if a.ID == c.ID {
		t.Errorf("different types, same id %v", a.ID)
	}
	if len(a.ID.String()) != 36 || a.ID.String()[14] != '8' {
		t.Errorf("id %q is not a version 8 UUID", a.ID)
	}
	if a.Rules != bid.DefaultRules || !a.Expiration.Equal(now.Add(time.Minute)) || a.Phase != protocol.Assertion {
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
	// Repeated keys, the last null; escaped and folded keys (K is U+212A).
	`{"id":1,"id":null,"guid":"g","artifact_uri":"u","expiration":"2021-02-19T10:13:47Z","expiration":null,"duration":"5","Duration":null}`,
	`{"id":"\u0031","artifact_uri":"u","tasked_at":1e3,"TASKED_AT":"2021-02-19 10:13:47+0100","rules":{"min_allowed_bid":1},"rules":[]}`,
	`{"id":1,"artifact_uri":"u","rules":{"min_allowed_bid":5,"MIN_allowed_bid":null,"max_allowed_bid":"7","max_allowed_bid":6}}`,
	`{"id":1,"artifact_uri":"a","artifact_uri":"","artifact_url":"b","response_url":"http://x\u002fy","metadata":{"mimetype":"m","sha256":5}}`,
	"{\"\u0069d\":\"\u00e9\\ud800\",\"artifact_uri\":\"u\xc3\",\"artifact_\u0074ype\":\"\u212a\"}",
	// encoding/json's depth limit (10,000), just within and just over.
	`{"id":1,"artifact_uri":"u","metadata":{"a":` + strings.Repeat("[", 9998) + strings.Repeat("]", 9998) + `}}`,
	`{"id":1,"artifact_uri":"u","metadata":{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}}`,
}

// bountyKeys are the keys of a bounty as documented, which errors name.
var bountyKeys = []string{"id", "guid", "artifact_type", "artifact_uri", "artifact_url", "sha256", "mimetype",
	"expiration", "response_url", "rules", "phase", "metadata", "duration", "tasked_at"}

// FuzzParseBounty: ParseBounty agrees with encoding/json on what is JSON, and
// what it accepts validates and survives a round trip through MarshalJSON.
func FuzzParseBounty(f *testing.F) {
	f.Add([]byte(`{"id":1,"artifact_type":"file","artifact_uri":"https://example.test/a","expiration":"2021-02-19T10:13:47.036168"}`))
	f.Add([]byte(`{"guid":"x","artifact_type":"URL","artifact_url":"u","metadata":{"sha256":null},"rules":{"min_allowed_bid":1e18}}`))
	f.Add([]byte(`{"id":99999999999999999999,"artifact_type":"File","artifact_uri":"data:,x","duration":"3","phase":"Arbitration_window"}`))
	f.Add([]byte(`{"id":"7","artifact_uri":"u","rules":[],"expiration":"","phase":null}`))
	f.Add([]byte(`null`))
	// The sha256 placeholders of real payloads, ignored with a warning.
	f.Add([]byte(`{"guid":"8f5e1d3c-0b1a-4c2d-9e8f-7a6b5c4d3e2f","artifact_url":"http://localhost:8080/a","expiration":"","rules":[],"sha256":"asdf"}`))
	f.Add([]byte(`{"id":"1","artifact_type":"FILE","artifact_uri":"https://x.test/a","sha256":"optional-for-file","mimetype":"text/plain"}`))
	f.Add([]byte(`{"id":1,"artifact_uri":"u","sha256":12345}`))
	f.Add([]byte(`{"id":1,"artifact_uri":"u","sha256":{"a":1},"metadata":{"sha256":"` + strings.Repeat("0", 64) + `"}}`))
	f.Add([]byte(`{"id":1,"artifact_uri":"u","metadata":{"sha256":"xyz"}}`))
	f.Add([]byte(`{"id":1,"artifact_uri":"u","sha256":"","metadata":{"sha256":"` + strings.Repeat("Ab", 32) + `"}}`))
	for _, c := range syntaxCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := protocol.ParseBounty(data)
		if err != nil {
			be, ok := errors.AsType[*protocol.BountyError](err)
			if !ok || !errors.Is(err, protocol.ErrMalformedBounty) {
				t.Fatalf("error %v is not a *BountyError wrapping ErrMalformedBounty", err)
			}
			// Only input that is not a JSON object (null reads as {}) fails
			// without naming a field.
			trimmed := bytes.TrimSpace(data)
			object := json.Valid(data) && (trimmed[0] == '{' || string(trimmed) == "null")
			if (be.Field != "") != object {
				t.Fatalf("%q: error %v; json.Valid = %v", data, err, json.Valid(data))
			}
			if be.Field != "" && !slices.Contains(bountyKeys, be.Field) {
				t.Fatalf("%q: error %v names no field of a bounty", data, err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("%q: accepted, but encoding/json says it is not JSON", data)
		}
		sameAsEncodingJSON(t, data, b)
		if err := b.Validate(); err != nil {
			t.Fatalf("parsed bounty does not validate: %v", err)
		}
		out, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := protocol.ParseBounty(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		// The wire form leaves out what was ignored, and so its warnings.
		if diff := cmp.Diff(b, again, bountyCmp, sameJSON, cmpopts.IgnoreFields(protocol.Bounty{}, "Warnings")); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// sameAsEncodingJSON checks that b holds what encoding/json reads from data
// under each key: the same strings (escapes, bad UTF-8, case-folded and
// repeated keys), the same metadata bytes and rules, and for the other
// values ParseBounty interprets, the same value as when ParseBounty reads
// the one that encoding/json picked alone.
func sameAsEncodingJSON(t *testing.T, data []byte, b protocol.Bounty) {
	t.Helper()
	var ref struct {
		ID           json.RawMessage `json:"id"`
		GUID         json.RawMessage `json:"guid"`
		ArtifactType string          `json:"artifact_type"`
		ArtifactURI  string          `json:"artifact_uri"`
		ArtifactURL  string          `json:"artifact_url"`
		SHA256       json.RawMessage `json:"sha256"`
		MIMEType     string          `json:"mimetype"`
		Expiration   json.RawMessage `json:"expiration"`
		ResponseURL  string          `json:"response_url"`
		Rules        json.RawMessage `json:"rules"`
		Phase        string          `json:"phase"`
		Metadata     json.RawMessage `json:"metadata"`
		Duration     json.RawMessage `json:"duration"`
		TaskedAt     json.RawMessage `json:"tasked_at"`
	}
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatalf("%q: accepted, but encoding/json: %v", data, err)
	}
	given := func(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }
	id := ref.ID
	if !given(id) {
		id = ref.GUID
	}
	var wantID protocol.BountyID
	if id[0] == '"' {
		var s string
		if err := json.Unmarshal(id, &s); err != nil {
			t.Fatal(err)
		}
		wantID = protocol.StringID(s)
	} else {
		wantID = mustID(t, string(id))
	}
	var meta struct {
		SHA256   string `json:"sha256"`
		MIMEType string `json:"mimetype"`
	}
	if given(ref.Metadata) {
		_ = json.Unmarshal(ref.Metadata, &meta)
	} else {
		ref.Metadata = nil
	}
	wantType := protocol.FileArtifact
	if strings.EqualFold(ref.ArtifactType, "url") {
		wantType = protocol.URLArtifact
	}
	wantPhase := protocol.Assertion
	if strings.EqualFold(ref.Phase, "arbitration") || strings.EqualFold(ref.Phase, "arbitration_window") {
		wantPhase = protocol.Arbitration
	}
	or := func(a, b string) string {
		if a != "" {
			return a
		}
		return b
	}
	// A sha256 (top level, else under metadata) is kept when it is 64 hex
	// digits; one that is not is ignored with a warning.
	wantSHA, warnings := "", 0
	check := func(given string) {
		norm := strings.ToLower(strings.TrimSpace(given))
		if _, err := hex.DecodeString(norm); err != nil || len(norm) != 64 {
			warnings++
			return
		}
		wantSHA = norm
	}
	if given(ref.SHA256) {
		var top string
		if ref.SHA256[0] != '"' {
			check("not a string")
		} else if err := json.Unmarshal(ref.SHA256, &top); err != nil {
			t.Fatal(err)
		} else if top != "" {
			check(top)
		}
	}
	if wantSHA == "" && meta.SHA256 != "" {
		check(meta.SHA256)
	}
	if len(b.Warnings) != warnings {
		t.Fatalf("%q: warnings %q, want %d", data, b.Warnings, warnings)
	}
	want := protocol.Bounty{
		ID: wantID, ArtifactType: wantType, ArtifactURI: or(ref.ArtifactURI, ref.ArtifactURL),
		SHA256:      wantSHA,
		MIMEType:    or(ref.MIMEType, meta.MIMEType),
		ResponseURL: ref.ResponseURL, Phase: wantPhase, Metadata: ref.Metadata,
		Warnings: b.Warnings,
	}
	// Each interpreted value, alone in a bounty.
	alone := func(key string, raw json.RawMessage) protocol.Bounty {
		t.Helper()
		if raw == nil {
			raw = json.RawMessage("null")
		}
		one, err := protocol.ParseBounty([]byte(`{"id":1,"artifact_uri":"u","` + key + `":` + string(raw) + `}`))
		if err != nil {
			t.Fatalf("%q: accepted, but its %s %s alone: %v", data, key, raw, err)
		}
		return one
	}
	want.Expiration = alone("expiration", ref.Expiration).Expiration
	want.TaskedAt = alone("tasked_at", ref.TaskedAt).TaskedAt
	want.Duration = alone("duration", ref.Duration).Duration
	// The rules as bid.Rules reads them with encoding/json.
	var list []any
	if !given(ref.Rules) || (ref.Rules[0] == '[' && json.Unmarshal(ref.Rules, &list) == nil && len(list) == 0) {
		want.Rules = bid.DefaultRules
	} else if err := want.Rules.UnmarshalJSON(ref.Rules); err != nil {
		t.Fatalf("%q: accepted, but bid.Rules says of %s: %v", data, ref.Rules, err)
	} else {
		want.Rules = want.Rules.OrDefault()
	}
	if diff := cmp.Diff(want, b, bountyCmp); diff != "" {
		t.Fatalf("%q: not what encoding/json reads (-encoding/json +ParseBounty):\n%s", data, diff)
	}
}

// FuzzParseBountyFields builds bounties from arbitrary field values and holds
// ParseBounty to the liberal rules of issue 12: only an id, an artifact type
// or a phase that cannot mean anything is refused; the expiration never is.
func FuzzParseBountyFields(f *testing.F) {
	f.Add("1", true, "FILE", "Assertion_Window", "", uint8(0), "extra")
	f.Add("6f1c2a7e-1d2b-4c3d-9e8f-0a1b2c3d4e5f", false, "", "", "2021-02-19T10:13:47.036168", uint8(1), "")
	f.Add("12", false, "uRl", "ARBITRATION", "tomorrow", uint8(2), "")
	f.Add(" ", false, "blob", "voting", "1970-01-01T00:00:00+0000", uint8(3), "")
	f.Add("18446744073709551617", true, "file", "arbitration_window", "x", uint8(4), "")
	f.Fuzz(func(t *testing.T, id string, number bool, typ, phase, expiration string, rulesShape uint8, extra string) {
		for _, s := range []string{id, typ, phase, expiration, extra} {
			if !utf8.ValidString(s) {
				t.Skip() // encoding/json would write U+FFFD: another value
			}
		}
		fields := map[string]any{
			"artifact_uri": "https://x.test/a", "artifact_type": typ, "phase": phase,
			"expiration": expiration, "x-" + extra: extra,
		}
		number = number && id != "" && strings.Trim(id, "0123456789") == "" && (id == "0" || id[0] != '0')
		if number {
			fields["id"] = json.Number(id)
		} else {
			fields["id"] = id
		}
		shapes := []any{nil, json.RawMessage(`{}`), json.RawMessage(`[]`), json.RawMessage(`null`),
			json.RawMessage(`{"min_allowed_bid":"5"}`), json.RawMessage(`{"max_allowed_bid":5}`)}
		wantRules := []bid.Rules{bid.DefaultRules, bid.DefaultRules, bid.DefaultRules, bid.DefaultRules,
			{Min: 5, Max: bid.DefaultRules.Max}, {Min: 5, Max: 5}}
		if r := int(rulesShape) % len(shapes); r > 0 {
			fields["rules"] = shapes[r]
		}
		data, err := json.Marshal(fields)
		if err != nil {
			t.Fatal(err)
		}

		var bad []string // the fields that must be refused
		if strings.TrimSpace(id) == "" {
			bad = append(bad, "id")
		}
		wantType := protocol.FileArtifact
		switch {
		case typ == "" || strings.EqualFold(typ, "file"):
		case strings.EqualFold(typ, "url"):
			wantType = protocol.URLArtifact
		default:
			bad = append(bad, "artifact_type")
		}
		wantPhase := protocol.Assertion
		switch {
		case phase == "" || strings.EqualFold(phase, "assertion") || strings.EqualFold(phase, "assertion_window"):
		case strings.EqualFold(phase, "arbitration") || strings.EqualFold(phase, "arbitration_window"):
			wantPhase = protocol.Arbitration
		default:
			bad = append(bad, "phase")
		}

		b, err := protocol.ParseBounty(data)
		if len(bad) > 0 {
			be, ok := errors.AsType[*protocol.BountyError](err)
			if !ok || !slices.Contains(bad, be.Field) {
				t.Fatalf("%s: error %v, want one about %v", data, err, bad)
			}
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", data, err)
		}
		wantID := protocol.StringID(id)
		if number {
			wantID = mustID(t, id)
		}
		if b.ID != wantID || b.ArtifactType != wantType || b.Phase != wantPhase ||
			b.Rules != wantRules[int(rulesShape)%len(shapes)] {
			t.Fatalf("%s: parsed as %+v", data, b)
		}
		if err := b.Validate(); err != nil {
			t.Fatalf("%s: Validate: %v", data, err)
		}
	})
}

// A sha256 that is not one (placeholders of real payloads, other JSON
// types) is ignored with one warning each, and the metadata's is used
// when valid; a well-formed one is kept, lowercased.
func TestParseBountySHA256Placeholders(t *testing.T) {
	valid := strings.Repeat("Ab", 32)
	tests := []struct {
		name, sha256 string // sha256 and metadata as JSON
		metadata     string
		want         string
		warnings     int
	}{
		{"asdf", `"asdf"`, `{}`, "", 1},
		{"optional-for-file", `"optional-for-file"`, `{"filename":"x"}`, "", 1},
		{"a number", `12345`, `{}`, "", 1},
		{"an object", `{"a":1}`, `{}`, "", 1},
		{"63 digits", `"` + valid[1:] + `"`, `{}`, "", 1},
		{"valid, upper case", `"` + valid + `"`, `{}`, strings.ToLower(valid), 0},
		{"placeholder, valid under metadata", `"asdf"`, `{"sha256":"` + valid + `"}`, strings.ToLower(valid), 1},
		{"both placeholders", `"asdf"`, `{"sha256":"x"}`, "", 2},
		{"null", `null`, `{}`, "", 0},
		{"empty", `""`, `{}`, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := protocol.ParseBounty([]byte(`{"guid":"g","artifact_url":"data:,x","expiration":"","rules":[],"sha256":` +
				tt.sha256 + `,"metadata":` + tt.metadata + `}`))
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if b.SHA256 != tt.want || len(b.Warnings) != tt.warnings {
				t.Errorf("sha256 %q, warnings %q; want %q and %d warnings", b.SHA256, b.Warnings, tt.want, tt.warnings)
			}
			for _, w := range b.Warnings {
				if !strings.Contains(w, "sha256") || !strings.Contains(w, "ignored") {
					t.Errorf("warning %q does not say what was ignored", w)
				}
			}
		})
	}
}
