// Package runrecord is the record of an analyze run (`ENGINE analyze
// --record FILE`): what each artifact was answered, how long it took and
// why it failed, for the report and diff commands and for a program of
// your own.
//
// A record is JSON Lines (UTF-8, one JSON object a line, "\n" after each),
// every object naming its type first:
//
//	{"type":"header","format":"psengine-run","version":1,"engine":"yara","started":"2026-05-01T10:00:00Z","backend":"local","kind":"file","inputs":["samples"]}
//	{"type":"scanner","product":"yara","version":"2.0.0","vendor_version":"4.3.2","signatures_version":"5d0c..."}
//	{"type":"file","path":"samples/a.exe","sha256":"9f86...","verdict":"malicious","confidence":0.75,"family":"Emotet","seconds":0.0123}
//	{"type":"file","path":"samples/b.bin","seconds":0,"error":"fetch","message":"open samples/b.bin: no such file or directory"}
//	{"type":"summary","artifacts":2,"answered":1,...}
//
// The header comes first; then a file line per artifact, in the run's
// order (its results' order), each written as soon as its result is known,
// with a scanner line before the first answer of each engine version met;
// the summary (the --summary-json document) comes last. A reader can
// stream it, one line at a time; a record without its summary is a partial
// run (interrupted: a killed process leaves the lines written so far, its
// last one possibly cut short).
//
// The format is versioned by the header's version: a reader refuses a
// newer version, and skips lines of a type it does not know and keys it
// does not know (additions within a version). See Header, Scanner, File
// and Summary for the fields.
package runrecord

import (
	"time"

	"github.com/polyswarm/psengine"
)

// Format and Version identify the record format in its header line.
const (
	Format  = "psengine-run"
	Version = 1
)

// Line types: the "type" of each line.
const (
	typeHeader  = "header"
	typeScanner = "scanner"
	typeFile    = "file"
	typeSummary = "summary"
)

// Header describes the run: its first line.
type Header struct {
	Engine  string    `json:"engine"`           // the program's name
	Started time.Time `json:"started"`          // when the run started
	Backend string    `json:"backend"`          // local, process, or a queue's name
	Kind    string    `json:"kind"`             // the artifacts' kind: file, url or bounty
	Inputs  []string  `json:"inputs,omitempty"` // the artifacts and directories named on the command line
	// TimesIncludeQueue: a file's seconds run from its submission to its
	// answer, time in the queue included (a queue backend).
	TimesIncludeQueue bool `json:"times_include_queue,omitempty"`
}

// headerLine is the header as its line holds it.
type headerLine struct {
	Type    string `json:"type"`
	Format  string `json:"format"`
	Version int    `json:"version"`
	Header
}

// Scanner is the engine that gave the answers after it (its answers'
// metadata): a line before the first answer of each version met.
type Scanner struct {
	Product           string `json:"product,omitempty"`
	Version           string `json:"version,omitempty"`        // of the engine wrapper
	VendorVersion     string `json:"vendor_version,omitempty"` // of the scanning engine
	SignaturesVersion string `json:"signatures_version,omitempty"`
}

// File is one artifact's result.
type File struct {
	// Path is the artifact as the run named it: a path (a file under a
	// directory argument is the directory joined with its relative
	// path), a URI, or a bounty file with kind bounty.
	Path string `json:"path"`
	// SHA256 is the lowercase hex of the artifact's content, "" when it
	// was never read (not found, not a regular file...).
	SHA256 string `json:"sha256,omitempty"`
	// Verdict is the answer's verdict, "" when there was no answer.
	Verdict psengine.Verdict `json:"verdict,omitempty"`
	// Confidence is the answer's confidence in [0, 1]: the analysis'
	// Confidence, else its Score/100, else its Likelihood's; 0 when it
	// gave none.
	Confidence float64 `json:"confidence,omitempty"`
	Family     string  `json:"family,omitempty"` // metadata.malware_family
	// Skipped is the answer's SKIPPED:* comment: a special answer, given
	// without a scan (an unsupported type, an encrypted archive...).
	Skipped string `json:"skipped,omitempty"`
	// Seconds is the time the artifact took (see Header.TimesIncludeQueue),
	// 0 when it never reached an engine.
	Seconds float64 `json:"seconds"`
	// Error is the kind of the error, when there was one (the analyze
	// summary's kinds: scan, timeout, not-found, unsupported...): with a
	// verdict, the reason of a special answer; without one, why there was
	// no answer. Message is the error itself, on one line.
	Error   string `json:"error,omitempty"`
	Message string `json:"message,omitempty"`
}

// Answered reports whether the artifact was answered.
func (f File) Answered() bool { return f.Verdict != "" }

// Detected reports whether the answer is a detection (malicious).
func (f File) Detected() bool { return f.Verdict == psengine.Malicious }

// Duration is Seconds as a time.Duration.
func (f File) Duration() time.Duration { return time.Duration(f.Seconds * float64(time.Second)) }

// Summary is the run's summary, as analyze prints it and --summary-json
// writes it: its last line.
type Summary struct {
	Artifacts  int            `json:"artifacts"`
	Answered   int            `json:"answered"`
	Unanswered int            `json:"unanswered"`
	Seconds    float64        `json:"elapsed_seconds"`
	Verdicts   map[string]int `json:"verdicts"`
	Skipped    map[string]int `json:"skipped"`   // special answers, by their SKIPPED:* comment
	Errors     map[string]int `json:"errors"`    // by kind
	Bids       *BidStats      `json:"bids"`      // null when no answer had a bid
	ScanTime   *TimeStats     `json:"scan_time"` // null when nothing was timed
	// QueueIncluded: with a queue backend, times run from submission to
	// answer.
	QueueIncluded bool `json:"scan_time_includes_queue"`
}

// BidStats are in NCT-wei (integers; they exceed 2^53).
type BidStats struct {
	Count  int   `json:"count"`
	Min    int64 `json:"min"`
	Median int64 `json:"median"`
	Max    int64 `json:"max"`
}

// TimeStats are the answered artifacts' times.
type TimeStats struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_seconds"`
	P95   float64 `json:"p95_seconds"`
	Max   float64 `json:"max_seconds"`
}

// Run is a whole record, read by Read.
type Run struct {
	Header   Header
	Scanners []Scanner // in the order met
	Files    []File    // in the run's order
	Summary  *Summary  // nil for a partial run
	// Truncated: the last line was cut short (the process was killed
	// while writing it) and was left out.
	Truncated bool
}

// Partial reports whether the run ended before its summary was written.
func (r *Run) Partial() bool { return r.Summary == nil }
