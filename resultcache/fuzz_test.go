package resultcache_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/resultcache"
)

// A record read from the file (which a crash, a disk or another program
// may have damaged) is decoded or refused, never a panic; what decodes
// encodes back to the same analysis.
func FuzzDecode(f *testing.F) {
	k := resultcache.KeyOf(psengine.CacheKey{Generation: "g", Type: psengine.FileArtifact, SHA256: "ab"})
	for _, a := range []psengine.Analysis{analysis(1), {Verdict: psengine.Benign}, psengine.Skipped(nil)} {
		rec, err := resultcache.Encode(k, a, time.Unix(1, 0))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(rec)
	}
	f.Add([]byte{})
	f.Add(append(k[:], make([]byte, 8)...))
	f.Add(append(append(k[:], make([]byte, 8)...), `{"v":"malicious","m":{"extra":{"a":[1,{"b":null}]}},"l":99}`...))
	f.Fuzz(func(t *testing.T, rec []byte) {
		a, err := resultcache.Decode(k, rec)
		if err != nil {
			return
		}
		again, err := resultcache.Encode(k, a, time.Unix(1, 0))
		if err != nil {
			return // an analysis the cache would not have written (an unencodable value)
		}
		b, err := resultcache.Decode(k, again)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if diff := cmp.Diff(a, b, cmpopts.EquateEmpty()); diff != "" { // an empty list is written as none
			t.Errorf("round trip (-first +second):\n%s", diff)
		}
	})
}
