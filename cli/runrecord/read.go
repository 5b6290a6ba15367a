package runrecord

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// MaxLine bounds a line's length: a longer one is an error.
const MaxLine = 1 << 20

var (
	// ErrNotRecord: the input does not start with a run record's header.
	ErrNotRecord = errors.New("not a psengine run record")
	// ErrVersion: the record is of a newer version than this reader's.
	ErrVersion = errors.New("run record of an unsupported version")
)

// SyntaxError is a line that is not what a record holds there.
type SyntaxError struct {
	Line int // 1-based
	Err  error
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *SyntaxError) Unwrap() error { return e.Err }

// Decoder reads a record as it is written, one line at a time: the header
// (NewDecoder), then the files (Next), then the summary (Summary, once Next
// returns io.EOF).
type Decoder struct {
	r         *bufio.Reader
	buf       []byte
	line      int
	header    Header
	scanners  []Scanner
	summary   *Summary
	truncated bool
	err       error // sticky
}

// NewDecoder reads the header from r. Its error wraps ErrNotRecord or
// ErrVersion for an input that is not a record it can read, or is the
// reading error.
func NewDecoder(r io.Reader) (*Decoder, error) {
	d := &Decoder{r: bufio.NewReaderSize(r, 64<<10)}
	line, _, err := d.readLine()
	if err == io.EOF {
		return nil, fmt.Errorf("%w: empty", ErrNotRecord)
	}
	if err != nil {
		return nil, err
	}
	var h headerLine
	if err := json.Unmarshal(line, &h); err != nil || h.Type != typeHeader || h.Format != Format {
		return nil, fmt.Errorf("%w: the first line is not its header", ErrNotRecord)
	}
	if h.Version < 1 || h.Version > Version {
		return nil, fmt.Errorf("%w: version %d (this program reads version %d)", ErrVersion, h.Version, Version)
	}
	d.header = h.Header
	return d, nil
}

// Header is the record's header.
func (d *Decoder) Header() Header { return d.header }

// Scanners are the scanner lines read so far, in order.
func (d *Decoder) Scanners() []Scanner { return d.scanners }

// Summary is the record's summary once Next returned io.EOF; nil for a
// partial run.
func (d *Decoder) Summary() *Summary { return d.summary }

// Truncated reports, once Next returned io.EOF, whether the last line was
// cut short and left out.
func (d *Decoder) Truncated() bool { return d.truncated }

// Next returns the next file line. It returns io.EOF after the last one
// (at the summary, or the end of a partial run), a *SyntaxError for a line
// that is not valid, or the reading error; then it returns the same error
// again.
func (d *Decoder) Next() (File, error) {
	for d.err == nil {
		var f File
		f, d.err = d.next()
		if d.err == nil {
			return f, nil
		}
		if errors.Is(d.err, errSkip) {
			d.err = nil
		}
	}
	return File{}, d.err
}

var errSkip = errors.New("skip")

// next reads one line: a file, or errSkip for any other line.
func (d *Decoder) next() (File, error) {
	if d.summary != nil {
		switch _, _, err := d.readLine(); err {
		case io.EOF:
			return File{}, io.EOF
		case nil:
			return File{}, d.syntax(errors.New("a line after the summary"))
		default:
			return File{}, err
		}
	}
	line, complete, err := d.readLine()
	if err != nil {
		return File{}, err
	}
	var t struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(line, &t); err != nil {
		if !complete { // the last line, cut short by a killed writer
			d.truncated = true
			return File{}, io.EOF
		}
		return File{}, d.syntax(err)
	}
	switch t.Type {
	case typeFile:
		var f File
		if err := json.Unmarshal(line, &f); err != nil {
			return File{}, d.syntax(err)
		}
		if err := f.check(); err != nil {
			return File{}, d.syntax(err)
		}
		return f, nil
	case typeScanner:
		var s Scanner
		if err := json.Unmarshal(line, &s); err != nil {
			return File{}, d.syntax(err)
		}
		d.scanners = append(d.scanners, s)
	case typeSummary:
		var s Summary
		if err := json.Unmarshal(line, &s); err != nil {
			return File{}, d.syntax(err)
		}
		d.summary = &s
	case typeHeader:
		return File{}, d.syntax(errors.New("a second header"))
	case "":
		return File{}, d.syntax(errors.New(`no "type"`))
	}
	return File{}, errSkip // a type of a later addition
}

// check reports a file line whose values no writer gives.
func (f File) check() error {
	switch {
	case f.Path == "":
		return errors.New("a file without a path")
	case f.Verdict != "" && !f.Verdict.Valid():
		return fmt.Errorf("verdict %q", f.Verdict)
	case !(f.Confidence >= 0 && f.Confidence <= 1):
		return fmt.Errorf("confidence %v is outside [0, 1]", f.Confidence)
	case !(f.Seconds >= 0) || math.IsInf(f.Seconds, 1):
		return fmt.Errorf("seconds %v", f.Seconds)
	}
	return nil
}

func (d *Decoder) syntax(err error) error { return &SyntaxError{Line: d.line, Err: err} }

// readLine returns the next line that is not blank, without its "\n" (or
// "\r\n"), and whether it ended with one (the last line of a partial run
// may not).
func (d *Decoder) readLine() (line []byte, complete bool, err error) {
	for {
		d.buf = d.buf[:0]
		for {
			chunk, err := d.r.ReadSlice('\n')
			d.buf = append(d.buf, chunk...)
			if len(d.buf) > MaxLine {
				d.line++
				return nil, false, d.syntax(fmt.Errorf("longer than %d bytes", MaxLine))
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == io.EOF && len(d.buf) == 0 {
				return nil, false, io.EOF
			}
			if err != nil && err != io.EOF {
				return nil, false, err
			}
			break
		}
		d.line++
		complete = d.buf[len(d.buf)-1] == '\n'
		line = bytes.TrimRight(d.buf, "\r\n")
		if len(bytes.TrimSpace(line)) > 0 {
			return line, complete, nil
		}
	}
}

// Read reads a whole record (see Decoder for its errors).
func Read(r io.Reader) (*Run, error) {
	d, err := NewDecoder(r)
	if err != nil {
		return nil, err
	}
	run := &Run{Header: d.Header()}
	for {
		f, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		run.Files = append(run.Files, f)
	}
	run.Scanners, run.Summary, run.Truncated = d.Scanners(), d.Summary(), d.Truncated()
	return run, nil
}

// ReadFile reads the record in the file at path; its errors name the path.
func ReadFile(path string) (*Run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	run, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return run, nil
}
