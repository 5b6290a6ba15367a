// Package protocol holds PolySwarm's bounty protocol as a scanner meets it
// (docs/PROTOCOL.md): the bounty asked (Bounty, parsed liberally by
// ParseBounty), the analysis answered (Analysis, Verdict, Metadata), the
// answer's wire form (Answer), the special results (Skipped, Unsupported,
// CannotFetch...) and the checks PolySwarm applies to an answer (Validate).
//
// Package psengine gives every name here under its own (psengine.Bounty is
// protocol.Bounty, as os.FileMode is fs.FileMode): an engine author writes
// psengine.Analysis and need not import this package. It exists so that
// the packages the engine builds on (the broker contract, brokers, tools
// that read answers) can use the protocol's nouns without the engine.
package protocol

import "errors"

var (
	// ErrMalformedBounty: a bounty that cannot be parsed or misses a field.
	ErrMalformedBounty = errors.New("psengine: malformed bounty")
	// ErrInvalidAnalysis: the scanner's analysis would be rejected by
	// PolySwarm (see Validate). Answered unknown.
	ErrInvalidAnalysis = errors.New("psengine: invalid analysis")
)
