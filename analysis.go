package psengine

import "github.com/polyswarm/psengine/protocol"

// The analysis: what a scanner says, and the answer it becomes. Its types
// are package protocol's, under the names an engine author uses (see that
// package for their methods and encodings).
type (
	// Analysis is what a scanner says about an artifact: a verdict, how
	// sure it is (Confidence, Score or Likelihood), metadata; the engine
	// fills the bid (protocol.Analysis).
	Analysis = protocol.Analysis
	// Verdict is an engine's opinion of an artifact.
	Verdict = protocol.Verdict
	// Metadata is the answer's metadata object; Extra holds keys
	// PolySwarm does not define.
	Metadata = protocol.Metadata
	// ScannerInfo describes the engine that answered.
	ScannerInfo = protocol.ScannerInfo
	// Environment is where the engine runs: lowercase OS and architecture.
	Environment = protocol.Environment
	// Answer is the wire form of an analysis: an assertion or a vote.
	Answer = protocol.Answer
	// ValidationError says why PolySwarm would reject an answer; it wraps
	// ErrInvalidAnalysis.
	ValidationError = protocol.ValidationError
)

const (
	Malicious  = protocol.Malicious
	Benign     = protocol.Benign
	Suspicious = protocol.Suspicious
	Unknown    = protocol.Unknown
)

// Comments of the special results (docs/PROTOCOL.md §3).
const (
	CommentSkipped             = protocol.CommentSkipped
	CommentEncrypted           = protocol.CommentEncrypted
	CommentUnsupported         = protocol.CommentUnsupported
	CommentCannotFetch         = protocol.CommentCannotFetch
	CommentUnsafeDecompression = protocol.CommentUnsafeDecompression
)

// MaxAnswerSize is the largest answer the engine delivers, in bytes of
// JSON; a larger one is refused by Validate and answered unknown.
const MaxAnswerSize = protocol.MaxAnswerSize

// Skipped is the answer for an artifact the engine chose not to scan, or
// could not (err, when not nil, goes to metadata.error).
func Skipped(err error) Analysis { return protocol.Skipped(err) }

// Encrypted is the answer for an encrypted artifact.
func Encrypted() Analysis { return protocol.Encrypted() }

// Unsupported is the answer for an artifact of a kind the engine does not handle.
func Unsupported() Analysis { return protocol.Unsupported() }

// CannotFetch is the answer for an artifact that could not be read; err
// goes to metadata.error.
func CannotFetch(err error) Analysis { return protocol.CannotFetch(err) }

// UnsafeDecompression is the answer for an archive that would not be safe
// to unpack (a decompression bomb).
func UnsafeDecompression() Analysis { return protocol.UnsafeDecompression() }

// NewAnswer returns the answer to b carrying a: a vote when b is in the
// arbitration phase.
func NewAnswer(b Bounty, a Analysis) Answer { return protocol.NewAnswer(b, a) }

// Validate reports whether a is an answer PolySwarm would accept for b
// (see protocol.Validate); errors are *ValidationError.
func Validate(b Bounty, a Analysis) error { return protocol.Validate(b, a) }

// ProductName turns a display name ("ClamAV Engine") into the wire form
// of metadata.product ("clamav-engine").
func ProductName(s string) string { return protocol.ProductName(s) }
