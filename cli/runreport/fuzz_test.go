package runreport_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/polyswarm/psengine/cli/runrecord"
	"github.com/polyswarm/psengine/cli/runreport"
)

// FuzzReport: whatever record reads (a user's file) renders, its report
// and its diff with itself, without an error or a panic.
func FuzzReport(f *testing.F) {
	f.Add(syntheticRecord(f, 30))
	f.Add([]byte(`{"type":"header","format":"psengine-run","version":1}` + "\n" +
		`{"type":"file","path":"a","verdict":"malicious","confidence":1,"seconds":1e300,"error":"x"}` + "\n" +
		`{"type":"file","path":"a","verdict":"benign","seconds":5e-324}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		run, err := runrecord.Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		if err := runreport.WriteReport(io.Discard, run, "fuzz.json"); err != nil {
			t.Fatal(err)
		}
		d := runrecord.Compare(run, run, 0.2)
		if len(d.Changes) != 0 {
			t.Errorf("a run compared with itself changed: %+v", d.Changes)
		}
		if err := runreport.WriteDiff(io.Discard, d, run, run, "a", "b"); err != nil {
			t.Fatal(err)
		}
	})
}
