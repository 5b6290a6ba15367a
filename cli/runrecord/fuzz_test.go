package runrecord_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/polyswarm/psengine/cli/runrecord"
)

// FuzzRead: any bytes (a user's file) are read as a record or refused with
// a typed error, never a panic; what is read writes back to a record that
// reads the same.
func FuzzRead(f *testing.F) {
	full := record(f, true)
	f.Add(full)
	f.Add(record(f, false))
	f.Add(full[:len(full)-7])
	f.Add([]byte(`{"type":"header","format":"psengine-run","version":1}` + "\n" + `{"type":"file","path":"\u00fc","confidence":1e-300,"seconds":1e308}` + "\n"))
	f.Add([]byte(`{"type":"header","format":"psengine-run","version":1}` + "\r\n\n" + `{"type":"x"}` + "\n" + `{"type":"summary"}`))
	f.Add([]byte("{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		run, err := runrecord.Read(bytes.NewReader(data))
		if err != nil {
			var se *runrecord.SyntaxError
			if !errors.Is(err, runrecord.ErrNotRecord) && !errors.Is(err, runrecord.ErrVersion) && !errors.As(err, &se) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		var buf bytes.Buffer
		w, err := runrecord.NewWriter(&buf, run.Header)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range run.Files {
			if err := w.WriteFile(f, runrecord.Scanner{}); err != nil {
				t.Fatal(err)
			}
		}
		if run.Summary != nil {
			if err := w.WriteSummary(*run.Summary); err != nil {
				t.Fatal(err)
			}
		}
		again, err := runrecord.Read(&buf)
		if err != nil {
			t.Fatalf("the record written back does not read: %v\n%s", err, buf.Bytes())
		}
		if diff := cmp.Diff(run.Files, again.Files); diff != "" {
			t.Errorf("files differ when written back (-read +again):\n%s", diff)
		}
		if diff := cmp.Diff(run.Summary, again.Summary); diff != "" {
			t.Errorf("summary differs when written back:\n%s", diff)
		}
		if !run.Header.Started.Equal(again.Header.Started) || run.Header.Engine != again.Header.Engine {
			t.Errorf("header %+v written back as %+v", run.Header, again.Header)
		}
	})
}
