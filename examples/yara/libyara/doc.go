// Package libyara is a small binding of libyara (YARA 4.2, Debian's
// libyara-dev), the library the yara command line is built on: it compiles
// rules with external variables and includes, saves and loads compiled
// rules, and scans memory and files with a scanner per goroutine.
//
// It covers what the YARA example engine needs, no more: no modules' data,
// no string match offsets, no process scans.
//
// # Building
//
// The binding needs cgo and libyara's header and library (apt-get install
// libyara-dev). Built without them (CGO_ENABLED=0, or the build tag
// nolibyara) the package still compiles: Available is false and every
// function fails with ErrUnavailable, so that a machine without libyara
// builds, vets and tests everything else.
//
// # Lifetimes
//
// libyara is initialized on first use and finalized when the last object
// (Compiler, Rules) is closed; Close every object you create. A Compiler
// yields one Rules; Rules are read-only and shared by any number of
// Scanners, each used by one goroutine at a time. Close the Scanners of
// Rules before the Rules (Rules.Close fails with ErrInUse otherwise).
//
// # Includes
//
// A rules file may include others (include "other.yar"). A relative
// include is resolved against the directory of the file that holds it,
// never against the working directory; every file read, top file or
// included, is listed by Compiler.Files with its SHA-256, so that a digest
// of them changes when any of them does. libyara names an included file by
// its include string (the name it reports in errors and passes to nested
// includes), so two different files included under the same string from
// different directories are refused with an error: give them distinct names.
package libyara

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
)

// Errors of the binding.
var (
	// ErrUnavailable reports a build without libyara (cgo disabled or the
	// nolibyara build tag).
	ErrUnavailable = errors.New("libyara: not built in (needs cgo and libyara-dev; built with -tags nolibyara?)")
	// ErrClosed reports the use of an object after its Close.
	ErrClosed = errors.New("libyara: closed")
	// ErrInUse reports Rules closed while scanners of them are open.
	ErrInUse = errors.New("libyara: rules still in use by scanners")
	// ErrTimeout reports a scan that took longer than its timeout.
	ErrTimeout = errors.New("libyara: scan timed out")
	// ErrCompile is wrapped by *CompileError.
	ErrCompile = errors.New("libyara: rules do not compile")
)

// Error is a libyara function that failed, with libyara's error code.
type Error struct {
	Op   string // the libyara function
	Code int    // libyara's ERROR_* code
}

func (e *Error) Error() string {
	if name, ok := errorNames[e.Code]; ok {
		return fmt.Sprintf("libyara: %s: %s (error %d)", e.Op, name, e.Code)
	}
	return fmt.Sprintf("libyara: %s: error %d", e.Op, e.Code)
}

// Is makes a scan timeout match ErrTimeout.
func (e *Error) Is(target error) bool { return target == ErrTimeout && e.Code == codeScanTimeout }

// codeScanTimeout is libyara's ERROR_SCAN_TIMEOUT.
const codeScanTimeout = 26

// errorNames names the libyara error codes a caller may meet.
var errorNames = map[int]string{
	1: "insufficient memory", 3: "could not open file", 4: "could not map file", 6: "invalid file",
	7: "corrupt file", 8: "unsupported file version", 20: "undefined identifier",
	codeScanTimeout: "scan timeout", 28: "callback error", 29: "invalid argument", 30: "too many matches",
	31: "internal fatal error", 48: "invalid external variable type", 55: "could not read file",
	56: "duplicated external variable", 58: "writing file",
}

// Message is one error or warning of the compiler, where it was found.
type Message struct {
	File    string // the file (absolute), or "" for a source given as a string
	Line    int
	Text    string
	Warning bool
}

func (m Message) String() string {
	var b strings.Builder
	if m.File != "" {
		fmt.Fprintf(&b, "%s:%d: ", m.File, m.Line)
	} else if m.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", m.Line)
	}
	if m.Warning {
		b.WriteString("warning: ")
	}
	b.WriteString(m.Text)
	return b.String()
}

// CompileError is a rules source that does not compile: libyara's errors,
// each naming the file and line. It wraps ErrCompile.
type CompileError struct {
	Errors []Message
}

func (e *CompileError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, m := range e.Errors {
		parts[i] = m.String()
	}
	return "libyara: rules do not compile: " + strings.Join(parts, "; ")
}

// Unwrap returns ErrCompile.
func (e *CompileError) Unwrap() error { return ErrCompile }

// SourceFile is a file the compiler read: a top file or an included one.
type SourceFile struct {
	Path     string // absolute
	Included bool   // read for an include statement
	SHA256   [sha256.Size]byte
	Size     int
}

// Rule is a compiled rule as a match reports it. Scans return pointers to
// the Rules' own values: do not modify them.
type Rule struct {
	Index      int // in Rules.Rules
	Identifier string
	Namespace  string // "default" unless the source was added under another
	Tags       []string
	Metas      []Meta // in source order; keys may repeat
	Global     bool
	Private    bool // never reported by scans
}

// Meta is one metadata entry of a rule: Value is an int64, a string or a
// bool (a string holds the bytes of the rule's meta as they are: it may not
// be UTF-8).
type Meta struct {
	Key   string
	Value any
}

// External checks that v is a value an external variable can hold (int64,
// int, float64, bool or string; a string must not hold a NUL byte) and
// returns it in its canonical type (int64, float64, bool or string).
func External(v any) (any, error) {
	switch x := v.(type) {
	case int64, float64, bool:
		return x, nil
	case int:
		return int64(x), nil
	case string:
		if strings.IndexByte(x, 0) >= 0 {
			return nil, fmt.Errorf("libyara: an external string holds a NUL byte")
		}
		return x, nil
	}
	return nil, fmt.Errorf("libyara: external of type %T: want int64, float64, bool or string", v)
}
