package cli

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/polyswarm/psengine/cli/runrecord"
	"github.com/polyswarm/psengine/cli/runreport"
)

// DefaultConfidenceDelta is the default of diff's --confidence-delta.
const DefaultConfidenceDelta = 0.2

// onlyListed bounds the paths diff prints of the files in one run alone.
const onlyListed = 20

// report renders a run record (analyze --record) as an HTML page.
func (p *Program) report(args []string) error {
	fs := newFlagSet("report")
	out := fs.String("o", "-", "write the page to `FILE` (- for stdout)")
	args, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return usageError{"report needs one RECORD (written by analyze --record)"}
	}
	run, err := p.readRecord(args[0])
	if err != nil {
		return err
	}
	return p.writePage(*out, func(w io.Writer) error { return runreport.WriteReport(w, run, args[0]) })
}

// diff lists what changed from one run record to another, and fails
// (errReported) when detections were lost.
func (p *Program) diff(args []string) error {
	fs := newFlagSet("diff")
	delta := fs.Float64("confidence-delta", DefaultConfidenceDelta, "list confidence changes of at least `D` (same verdict and family)")
	asJSON := fs.Bool("json", false, "print the changes as one JSON document")
	out := fs.String("o", "", "also write them as an HTML page to `FILE`")
	args, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(args) != 2 {
		return usageError{"diff needs two RECORDs: OLD NEW"}
	}
	if !(*delta > 0) || math.IsInf(*delta, 1) {
		return usageError{fmt.Sprintf("--confidence-delta %v: want a number above 0", *delta)}
	}
	old, err := p.readRecord(args[0])
	if err != nil {
		return err
	}
	cur, err := p.readRecord(args[1])
	if err != nil {
		return err
	}
	d := runrecord.Compare(old, cur, *delta)
	if *asJSON {
		if err := writeJSON(p.Stdout, d); err != nil {
			return err
		}
	} else if err := writeDiffText(p.Stdout, d); err != nil {
		return err
	}
	if *out != "" {
		err := p.writePage(*out, func(w io.Writer) error { return runreport.WriteDiff(w, d, old, cur, args[0], args[1]) })
		if err != nil {
			return err
		}
	}
	if d.Count(runrecord.LostDetection) > 0 {
		return errReported
	}
	return nil
}

// readRecord reads the record at path, saying on stderr when the run is
// partial.
func (p *Program) readRecord(path string) (*runrecord.Run, error) {
	run, err := runrecord.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if run.Partial() {
		fmt.Fprintf(p.Stderr, "%s: %s: a partial run (no summary: interrupted), %d artifacts recorded\n", p.Name, path, len(run.Files))
	}
	return run, nil
}

// writePage writes a page with write to the file path (- for stdout); a
// file not written whole is removed.
func (p *Program) writePage(path string, write func(io.Writer) error) error {
	if path == "-" {
		return write(p.Stdout)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// writeDiffText writes d for people: the changes by kind, then the counts.
func writeDiffText(w io.Writer, d runrecord.Diff) error {
	var b strings.Builder
	i := 0
	for _, c := range runrecord.Changes {
		n := d.Count(c)
		if n == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s (%d):\n", runreport.ChangeTitle(c), n)
		for ; i < len(d.Changes) && d.Changes[i].Change == c; i++ {
			fc := d.Changes[i]
			fmt.Fprintf(&b, "  %s", fc.Path)
			if fc.OldPath != "" {
				fmt.Fprintf(&b, " (moved from %s)", fc.OldPath)
			}
			fmt.Fprintf(&b, ": %s -> %s\n", answerText(fc.Old), answerText(fc.New))
		}
	}
	for _, only := range []struct {
		which string
		paths []string
	}{{"old", d.OnlyOld}, {"new", d.OnlyNew}} {
		if len(only.paths) == 0 {
			continue
		}
		fmt.Fprintf(&b, "In the %s run alone, not compared (%d):\n", only.which, len(only.paths))
		for _, path := range only.paths[:min(len(only.paths), onlyListed)] {
			fmt.Fprintf(&b, "  %s\n", path)
		}
		if more := len(only.paths) - onlyListed; more > 0 {
			fmt.Fprintf(&b, "  ... and %d more (--json lists them all)\n", more)
		}
	}
	fmt.Fprintf(&b, "%d artifacts compared", d.Compared)
	if d.Moved > 0 {
		fmt.Fprintf(&b, " (%d moved)", d.Moved)
	}
	parts := make([]string, len(runrecord.Changes))
	for i, c := range runrecord.Changes {
		parts[i] = fmt.Sprintf("%s %d", strings.ToLower(runreport.ChangeTitle(c)), d.Count(c))
	}
	fmt.Fprintf(&b, ": %s\n", strings.Join(parts, ", "))
	_, err := io.WriteString(w, b.String())
	return err
}

// answerText is a recorded answer on one line: "malicious Emotet 0.75",
// "no answer (not-found)".
func answerText(f runrecord.File) string {
	s := "no answer"
	if f.Answered() {
		s = string(f.Verdict)
		if f.Family != "" {
			s += " " + f.Family
		}
		if f.Confidence > 0 {
			s += fmt.Sprintf(" %.2f", f.Confidence)
		}
		if f.Skipped != "" {
			s += " " + f.Skipped
		}
	}
	if f.Error != "" {
		s += " (" + f.Error + ")"
	}
	return s
}
