package fetch_test

import (
	"errors"
	"io"
	"testing"

	"github.com/polyswarm/psengine/fetch"
)

// FuzzFetchDataURI: Fetch of "data:"+s never panics, agrees with
// ParseDataURI on what is valid and what the payload is (both in memory and
// spilled to disk), and fetches the canonical re-encoding to the same bytes.
func FuzzFetchDataURI(f *testing.F) {
	for _, s := range []string{
		",A%20brief%20note", "text/plain;charset=iso-8859-7,%be%d3%be", "image/gif;base64,R0lGODdhMAAwAPAAAAAAAP",
		";base64,-_-_", ";base64, QU\r\nJD\tRA== ", ";base64,%2B%2F8%3D", ";base64,QQ", ";base64,QQ=Q", "text,x", ",%zz",
		";base64,TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACAAAAA",
	} {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, s string) {
		uri := "data:" + s
		d, perr := fetch.ParseDataURI(uri)
		var want []byte
		if perr == nil {
			var err error
			if want, err = io.ReadAll(d.Reader()); err != nil {
				t.Fatalf("Reader of an accepted URI: %v", err)
			}
		}
		for _, memoryLimit := range []int64{0, 7} {
			p := fetch.Local()
			p.TempDir, p.MemoryLimit = dir, memoryLimit
			c, err := p.Fetch(t.Context(), uri, "")
			if perr != nil {
				if !errors.Is(err, fetch.ErrMalformedURI) {
					t.Fatalf("Fetch(%q) = %v; ParseDataURI says %v", uri, err, perr)
				}
				assertOneLine(t, err)
				continue
			}
			if err != nil {
				t.Fatalf("Fetch(%q) = %v; ParseDataURI accepts it", uri, err)
			}
			if c.SHA256() != sha(want) || c.Size() != int64(len(want)) || string(c.Head()) != string(want[:min(len(want), fetch.HeadSize)]) {
				t.Fatalf("Fetch(%q) with memory limit %d: sha %s size %d; the payload has sha %s size %d",
					uri, memoryLimit, c.SHA256(), c.Size(), sha(want), len(want))
			}
			if got := contentBytes(t, c); !bytesEqual(got, want) {
				t.Fatalf("Fetch(%q): read %q, want %q", uri, got, want)
			}
			c.Close()
		}
		if perr == nil {
			canonical := fetch.NewDataURI(d.MediaType, d.Params, want).String()
			c, err := fetch.Open(t.Context(), canonical)
			if err != nil || c.SHA256() != sha(want) {
				t.Fatalf("Fetch of the re-encoded %q: %v", canonical, err)
			}
			c.Close()
		}
		assertEmptyDir(t, dir)
	})
}
