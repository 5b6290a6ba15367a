package psengine

import (
	"time"

	"github.com/polyswarm/psengine/protocol"
)

// The bounty: what PolySwarm asks. Its types are package protocol's, under
// the names an engine author uses (see that package for their methods).
type (
	// Bounty is a request to scan one artifact (protocol.Bounty).
	Bounty = protocol.Bounty
	// BountyID is a bounty's id as received, echoed back exactly.
	BountyID = protocol.BountyID
	// BountyError says which field of a bounty is malformed; it wraps
	// ErrMalformedBounty.
	BountyError = protocol.BountyError
	// ArtifactType says what a bounty asks to scan: a file's bytes or a URL.
	ArtifactType = protocol.ArtifactType
	// Phase is the bounty's phase: assertions carry a bid, votes do not.
	Phase = protocol.Phase
)

const (
	FileArtifact = protocol.FileArtifact // the artifact URI points at the bytes to scan
	URLArtifact  = protocol.URLArtifact  // the artifact URI is the URL to scan
	Assertion    = protocol.Assertion
	Arbitration  = protocol.Arbitration
)

// ParseBounty parses one bounty from JSON, liberal in what it accepts (see
// protocol.ParseBounty); errors are *BountyError.
func ParseBounty(data []byte) (Bounty, error) { return protocol.ParseBounty(data) }

// ParseArtifactType accepts file and url in any casing.
func ParseArtifactType(s string) (ArtifactType, error) { return protocol.ParseArtifactType(s) }

// NumberID returns the id for an integer given in decimal digits.
func NumberID(digits string) (BountyID, error) { return protocol.NumberID(digits) }

// StringID returns the id for a string such as a UUID.
func StringID(s string) BountyID { return protocol.StringID(s) }

// LocalBounty forges the bounty for an artifact given locally (see
// protocol.LocalBounty): an id derived from the content, no response URL,
// expiring ttl after now.
func LocalBounty(t ArtifactType, uri, sha256Hex, mimetype string, now time.Time, ttl time.Duration) Bounty {
	return protocol.LocalBounty(t, uri, sha256Hex, mimetype, now, ttl)
}
