package runrecord_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/cli/runrecord"
)

var (
	header = runrecord.Header{Engine: "test", Started: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC),
		Backend: "local", Kind: "file", Inputs: []string{"samples"}}
	scanner = runrecord.Scanner{Product: "test", Version: "1.0", SignaturesVersion: "abc"}
	files   = []runrecord.File{
		{Path: "samples/a", SHA256: strings.Repeat("a", 64), Verdict: psengine.Malicious, Confidence: 0.75, Family: "Fam", Seconds: 0.012},
		{Path: "samples/b", SHA256: strings.Repeat("b", 64), Verdict: psengine.Unknown, Seconds: 5.001, Error: "timeout", Message: "scan: timeout after 5s"},
		{Path: "samples/ü \"quoted\"\n", Error: "not-found", Message: "open: no such file"},
	}
	summary = runrecord.Summary{Artifacts: 3, Answered: 2, Unanswered: 1, Seconds: 5.1,
		Verdicts: map[string]int{"malicious": 1, "unknown": 1}, Skipped: map[string]int{},
		Errors: map[string]int{"timeout": 1, "not-found": 1}, Bids: &runrecord.BidStats{Count: 1, Min: 1 << 60, Median: 1 << 60, Max: 1 << 60}}
)

// record writes a whole record with the writer.
func record(t testing.TB, withSummary bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := runrecord.NewWriter(&buf, header)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := w.WriteFile(f, scanner); err != nil {
			t.Fatal(err)
		}
	}
	if withSummary {
		if err := w.WriteSummary(summary); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	data := record(t, true)
	if n := bytes.Count(data, []byte("\n")); n != 1+1+len(files)+1 {
		t.Errorf("%d lines, want header, scanner, %d files, summary:\n%s", n, len(files), data)
	}
	if !bytes.HasPrefix(data, []byte(`{"type":"header","format":"psengine-run","version":1,`)) {
		t.Errorf("the record does not start with its header:\n%s", data)
	}
	run, err := runrecord.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	want := &runrecord.Run{Header: header, Scanners: []runrecord.Scanner{scanner}, Files: files, Summary: &summary}
	if diff := cmp.Diff(want, run); diff != "" {
		t.Errorf("read back (-want +got):\n%s", diff)
	}
	if run.Partial() {
		t.Error("a complete run is partial")
	}
}

// A run killed while writing leaves its lines up to the cut: the cut line
// is left out (unless all of it but its "\n" is there), the run is
// partial.
func TestPartialRun(t *testing.T) {
	data := record(t, false)
	headerEnd := bytes.IndexByte(data, '\n')
	for cut := len(data) - 1; cut > 0; cut-- {
		run, err := runrecord.Read(bytes.NewReader(data[:cut]))
		if cut < headerEnd {
			if !errors.Is(err, runrecord.ErrNotRecord) {
				t.Errorf("cut at %d, in the header: %v, want ErrNotRecord", cut, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		whole := data[:cut]
		cutShort := data[cut-1] != '\n' && data[cut] != '\n'
		if cutShort {
			whole = data[:bytes.LastIndexByte(data[:cut], '\n')+1]
		}
		wantFiles := bytes.Count(whole, []byte(`{"type":"file"`))
		if !run.Partial() || run.Truncated != cutShort || len(run.Files) != wantFiles {
			t.Errorf("cut at %d: partial %v, truncated %v, %d files; want truncated %v, %d files",
				cut, run.Partial(), run.Truncated, len(run.Files), cutShort, wantFiles)
		}
		if wantFiles > 0 && run.Files[0].Path != files[0].Path {
			t.Errorf("cut at %d: first file %+v", cut, run.Files[0])
		}
	}
	run, err := runrecord.Read(bytes.NewReader(data))
	if err != nil || !run.Partial() || run.Truncated || len(run.Files) != len(files) {
		t.Errorf("without a summary: %v, %+v", err, run)
	}
}

// A reader streams the record: each file is returned as soon as its line
// is there, before the rest is written.
func TestDecoderStreams(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	go func() {
		defer pw.Close()
		w, err := runrecord.NewWriter(pw, header)
		if err != nil {
			return
		}
		for _, f := range files {
			if err := w.WriteFile(f, scanner); err != nil {
				return
			}
		}
	}()
	d, err := runrecord.NewDecoder(pr)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range files {
		f, err := d.Next()
		if err != nil || f.Path != want.Path {
			t.Fatalf("Next = %+v, %v; want %s", f, err, want.Path)
		}
	}
	if _, err := d.Next(); err != io.EOF || d.Summary() != nil {
		t.Errorf("end: %v, summary %v", err, d.Summary())
	}
}

func TestReadErrors(t *testing.T) {
	head := string(record(t, false)[:bytes.IndexByte(record(t, false), '\n')+1])
	file := `{"type":"file","path":"x","seconds":1}` + "\n"
	for _, c := range []struct {
		name, data string
		want       error
		line       int // of a *SyntaxError
	}{
		{"empty", "", runrecord.ErrNotRecord, 0},
		{"summary JSON", `{"artifacts":1}` + "\n", runrecord.ErrNotRecord, 0},
		{"other format", `{"type":"header","format":"other","version":1}` + "\n", runrecord.ErrNotRecord, 0},
		{"newer version", `{"type":"header","format":"psengine-run","version":2}` + "\n", runrecord.ErrVersion, 0},
		{"version 0", `{"type":"header","format":"psengine-run"}` + "\n", runrecord.ErrVersion, 0},
		{"not JSON", head + file + "garbage\n" + file, nil, 3},
		{"no type", head + `{"path":"x"}` + "\n", nil, 2},
		{"second header", head + file + head, nil, 3},
		{"no path", head + `{"type":"file","seconds":1}` + "\n", nil, 2},
		{"bad verdict", head + `{"type":"file","path":"x","verdict":"evil"}` + "\n", nil, 2},
		{"bad confidence", head + `{"type":"file","path":"x","confidence":1.5}` + "\n", nil, 2},
		{"negative seconds", head + `{"type":"file","path":"x","seconds":-1}` + "\n", nil, 2},
		{"wrong field type", head + `{"type":"file","path":7}` + "\n", nil, 2},
		{"after the summary", head + `{"type":"summary","artifacts":0}` + "\n" + file, nil, 3},
		{"too long", head + `{"type":"file","path":"` + strings.Repeat("x", runrecord.MaxLine) + `"}` + "\n", nil, 2},
	} {
		_, err := runrecord.Read(strings.NewReader(c.data))
		var se *runrecord.SyntaxError
		switch {
		case err == nil:
			t.Errorf("%s: no error", c.name)
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		case c.want == nil && (!errors.As(err, &se) || se.Line != c.line):
			t.Errorf("%s: %v, want a syntax error on line %d", c.name, err, c.line)
		}
	}
}

// Lines of a type added later, keys added later, blank lines and CRLF line
// ends are read past.
func TestReadTolerates(t *testing.T) {
	data := `{"type":"header","format":"psengine-run","version":1,"engine":"e","later":true}` + "\r\n" +
		"\n" +
		`{"type":"note","text":"from a later writer"}` + "\n" +
		`{"type":"file","path":"x","verdict":"benign","seconds":0.5,"later":{"a":1}}` + "\r\n" +
		`{"type":"summary","artifacts":1}`
	run, err := runrecord.Read(strings.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if run.Header.Engine != "e" || len(run.Files) != 1 || run.Files[0].Verdict != psengine.Benign || run.Partial() || run.Truncated {
		t.Errorf("%+v", run)
	}
}
