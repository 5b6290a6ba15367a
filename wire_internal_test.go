package psengine

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// wireCases are bounty-ish inputs that exercise decodeWire's corners.
var wireCases = []string{
	`{"id":1,"artifact_type":"FILE","artifact_uri":"https://x/a","rules":{"min_allowed_bid":1,"max_allowed_bid":2}}`,
	`{"ID":"a","Artifact_Type":"url","ARTIFACT_URI":"u","\u0073ha256":"ab","ſha256":"cd","mimetype":null}`,
	`{"id":1,"rules":{"min_allowed_bid":1},"rules":{"max_allowed_bid":2}}`,
	`{"id":1,"rules":{"min_allowed_bid":1},"rules":null,"rules":{"MAX_ALLOWED_BID":3}}`,
	`{"phase":"\ud83d\ude00 \ud83d x \ude00 \ud83d\u0041 \\ \/ \b\f\n\r\t \u00e9"}`,
	"{\"phase\":\"bad \xff utf8 \xe2\x82\"}",
	`{"artifact_type":5}`, `{"artifact_type":[1,{"a":null}]}`, `{"rules":"x"}`, `{"rules":[]}`,
	`{"rules":true}`, `{"phase":false,"artifact_type":{}}`, `[1,2]`, `"x"`, `5`, `null`, `true`,
	` { "metadata" : { "a" : [ 1 , -2.5e+3 , "x" ] } , "expiration" : 1.5 } `,
	`{"id":1} x`, `{"id":1,}`, `{"id"}`, `{"id":}`, `{"id":01}`, `{"id":-}`, `{"id":1.}`, `{"id":1e}`,
	`{"id":"\x"}`, `{"id":"\u12"}`, "{\"id\":\"a\x01\"}", `{"id":tru}`, `{"id":nul}`, `{`, ``, `   `,
	`{"a":[}`, `{"a":[1 2]}`, `{"a":{"b" 1}}`, `{1:2}`, `{"duration":"30","tasked_at":null,"guid":"g"}`,
	`{"artifact_url":"https://y","sha256":"` + strings.Repeat("AB", 32) + `"}`,
	strings.Repeat("[", 50) + strings.Repeat("]", 50),
	// encoding/json's depth limit (10,000), just within and just over.
	`{"metadata":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`,
	`{"metadata":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
}

// FuzzDecodeWire holds decodeWire to encoding/json's behaviour: the same
// fields for valid input, and the same kind of error otherwise.
func FuzzDecodeWire(f *testing.F) {
	for _, c := range wireCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want, got wireBounty
		wantErr := json.Unmarshal(data, &want)
		gotErr := decodeWire(data, &got)
		var wantSyn *json.SyntaxError
		var wantTyp *json.UnmarshalTypeError
		var gotSyn *wireSyntaxError
		var gotTyp *wireTypeError
		switch {
		case wantErr == nil:
			if gotErr != nil {
				t.Fatalf("%q: error %v; encoding/json decodes it", data, gotErr)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("%q: fields differ from encoding/json's (-json +ours):\n%s", data, diff)
			}
		case errors.As(wantErr, &wantSyn):
			if !errors.As(gotErr, &gotSyn) {
				t.Fatalf("%q: error %v, want a syntax error like encoding/json's %v", data, gotErr, wantErr)
			}
		case errors.As(wantErr, &wantTyp):
			if !errors.As(gotErr, &gotTyp) || gotTyp.Field != wantTyp.Field || gotTyp.Value != wantTyp.Value {
				t.Fatalf("%q: error %#v, want a type error for field %q (%s) like encoding/json's %v", data, gotErr, wantTyp.Field, wantTyp.Value, wantErr)
			}
		default:
			if gotErr == nil {
				t.Fatalf("%q: no error; encoding/json says %v", data, wantErr)
			}
		}
	})
}

func TestDecodeWireCases(t *testing.T) {
	// The seeds alone, so that a plain `go test` checks them too.
	for _, c := range wireCases {
		var want, got wireBounty
		wantErr, gotErr := json.Unmarshal([]byte(c), &want), decodeWire([]byte(c), &got)
		if (wantErr == nil) != (gotErr == nil) {
			t.Errorf("%q: error %v, encoding/json's %v", c, gotErr, wantErr)
		} else if diff := cmp.Diff(want, got); wantErr == nil && diff != "" {
			t.Errorf("%q: (-json +ours):\n%s", c, diff)
		}
	}
}

// special8 agrees with a byte-by-byte check, on every byte value in every
// lane and on random words.
func TestSpecial8(t *testing.T) {
	slow := func(x uint64) bool {
		for range 8 {
			c := byte(x)
			if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
				return true
			}
			x >>= 8
		}
		return false
	}
	const plain = 0x6161616161616161 // "aaaaaaaa"
	for lane := range 8 {
		for c := range 256 {
			x := plain&^(0xff<<(8*lane)) | uint64(c)<<(8*lane)
			if got, want := special8(x), slow(x); got != want {
				t.Fatalf("special8(%#x) = %v, want %v", x, got, want)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1_000_000 {
		x := rng.Uint64() & 0x7f7f7f7f7f7f7f7f // mostly ASCII
		if rng.IntN(4) == 0 {
			x = rng.Uint64()
		}
		if got, want := special8(x), slow(x); got != want {
			t.Fatalf("special8(%#x) = %v, want %v", x, got, want)
		}
	}
}
