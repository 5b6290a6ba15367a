package runrecord

import (
	"encoding/json"
	"fmt"
	"io"
)

// Writer writes a record, each line with one Write call as soon as it is
// given, so that a file holds every line written before the process died.
// It is not safe for concurrent use. After an error, it writes nothing more
// and returns that error.
type Writer struct {
	w       io.Writer
	scanner Scanner // the last scanner line written
	err     error
}

// NewWriter writes the header line to w and returns the Writer of the
// rest of the record.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	rw := &Writer{w: w}
	return rw, rw.write(headerLine{typeHeader, Format, Version, h})
}

// WriteFile writes one artifact's line. Under a scanner different from the
// last one written, it writes a scanner line first (none for a file
// without an answer).
func (w *Writer) WriteFile(f File, s Scanner) error {
	if f.Answered() && s != w.scanner && s != (Scanner{}) {
		line := struct {
			Type string `json:"type"`
			Scanner
		}{typeScanner, s}
		if err := w.write(line); err != nil {
			return err
		}
		w.scanner = s
	}
	line := struct {
		Type string `json:"type"`
		File
	}{typeFile, f}
	return w.write(line)
}

// WriteSummary writes the summary, the record's last line.
func (w *Writer) WriteSummary(s Summary) error {
	line := struct {
		Type string `json:"type"`
		Summary
	}{typeSummary, s}
	return w.write(line)
}

func (w *Writer) write(v any) error {
	if w.err != nil {
		return w.err
	}
	b, err := json.Marshal(v)
	if err != nil {
		w.err = fmt.Errorf("run record: %w", err)
		return w.err
	}
	if _, err := w.w.Write(append(b, '\n')); err != nil {
		w.err = fmt.Errorf("run record: %w", err)
	}
	return w.err
}
