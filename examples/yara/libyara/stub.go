//go:build !cgo || nolibyara

package libyara

import (
	"io"
	"os"
	"time"
)

// Available reports whether the package was built with libyara.
const Available = false

// Version is "" without libyara.
func Version() string { return "" }

// Compiler is unusable without libyara.
type Compiler struct{}

// NewCompiler fails with ErrUnavailable.
func NewCompiler() (*Compiler, error) { return nil, ErrUnavailable }

// Close does nothing.
func (*Compiler) Close() {}

// Define fails with ErrUnavailable.
func (*Compiler) Define(string, any) error { return ErrUnavailable }

// AddFile fails with ErrUnavailable.
func (*Compiler) AddFile(string, string) error { return ErrUnavailable }

// AddString fails with ErrUnavailable.
func (*Compiler) AddString(string, string) error { return ErrUnavailable }

// Files returns nothing.
func (*Compiler) Files() []SourceFile { return nil }

// Warnings returns nothing.
func (*Compiler) Warnings() []Message { return nil }

// Rules fails with ErrUnavailable.
func (*Compiler) Rules() (*Rules, error) { return nil, ErrUnavailable }

// Rules are unusable without libyara.
type Rules struct{}

// LoadRules fails with ErrUnavailable.
func LoadRules([]byte) (*Rules, error) { return nil, ErrUnavailable }

// Save fails with ErrUnavailable.
func (*Rules) Save(io.Writer) error { return ErrUnavailable }

// Len is 0.
func (*Rules) Len() int { return 0 }

// Rules returns nothing.
func (*Rules) Rules() []Rule { return nil }

// Close does nothing.
func (*Rules) Close() error { return nil }

// NewScanner fails with ErrUnavailable.
func (*Rules) NewScanner() (*Scanner, error) { return nil, ErrUnavailable }

// Scanner is unusable without libyara.
type Scanner struct{}

// Close does nothing.
func (*Scanner) Close() {}

// Define fails with ErrUnavailable.
func (*Scanner) Define(string, any) error { return ErrUnavailable }

// SetTimeout does nothing.
func (*Scanner) SetTimeout(time.Duration) {}

// ScanMem fails with ErrUnavailable.
func (*Scanner) ScanMem([]byte) ([]*Rule, error) { return nil, ErrUnavailable }

// ScanFile fails with ErrUnavailable.
func (*Scanner) ScanFile(string) ([]*Rule, error) { return nil, ErrUnavailable }

// ScanFD fails with ErrUnavailable.
func (*Scanner) ScanFD(*os.File) ([]*Rule, error) { return nil, ErrUnavailable }
