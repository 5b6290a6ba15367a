package cli

import (
	"fmt"
	"math"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/cli/runrecord"
)

// maxMessage bounds an error message in a run record.
const maxMessage = 1000

// recorder writes analyze --record FILE: each result as it comes, the
// summary at the end (see package runrecord). A nil recorder records
// nothing. Writing stops at the first error, which finish returns.
type recorder struct {
	path string
	f    *os.File
	w    *runrecord.Writer
}

// createRecord creates the record file at path and writes its header.
func createRecord(path string, h runrecord.Header) (*recorder, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--record: %w", err)
	}
	w, err := runrecord.NewWriter(f, h)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("--record %s: %w", path, err)
	}
	return &recorder{path: path, f: f, w: w}, nil
}

// add records one result; its error surfaces at finish.
func (r *recorder) add(o analyzed) {
	if r == nil {
		return
	}
	f := runrecord.File{Path: o.name, SHA256: o.res.Bounty.SHA256, Seconds: o.took.Seconds()}
	if o.res.Answered {
		a := o.res.Analysis
		f.Verdict, f.Confidence, f.Family = a.Verdict, confidence(a), a.Metadata.MalwareFamily
		for _, c := range a.Metadata.Comments {
			if strings.HasPrefix(c, psengine.CommentSkipped) {
				f.Skipped = c
				break
			}
		}
	}
	if o.res.Err != nil {
		f.Error, f.Message = errorKind(o.res.Err), truncate(oneLine(o.res.Err), maxMessage)
	}
	s := o.res.Analysis.Metadata.Scanner
	_ = r.w.WriteFile(f, runrecord.Scanner{Product: o.res.Analysis.Metadata.Product,
		Version: s.Version, VendorVersion: s.VendorVersion, SignaturesVersion: s.SignaturesVersion})
}

// finish writes the summary, closes the file and returns the first error.
func (r *recorder) finish(sum summaryJSON) error {
	if r == nil || r.f == nil {
		return nil
	}
	err := r.w.WriteSummary(sum)
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	r.f = nil
	if err != nil {
		return fmt.Errorf("--record %s: %w", r.path, err)
	}
	return nil
}

// close closes the file of a run that ended before its summary (its
// record is partial); it does nothing after finish.
func (r *recorder) close() {
	if r != nil && r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// confidence is the answer's confidence in [0, 1]: its Confidence, else
// its Score/100, else its Likelihood's (0 when it gave none).
func confidence(a psengine.Analysis) float64 {
	c := a.Confidence
	if !(c > 0) {
		c = a.Score / 100
	}
	if !(c > 0) {
		c, _ = a.Likelihood.Confidence()
	}
	if math.IsNaN(c) {
		return 0
	}
	return min(max(c, 0), 1)
}

// truncate cuts s to at most n bytes, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
