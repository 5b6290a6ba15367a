// Package psenginetest is what engine authors import in their tests:
// builders for artifacts and bounties, go-cmp options for analyses, and
// conformance tests: TestScanner for scanners, TestBroker for brokers.
package psenginetest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/bid"
)

// EICAR returns the 68-byte EICAR anti-virus test string, assembled at run
// time so that no source file holds it.
func EICAR() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-" + "TEST-FILE!$H+H*")
}

// Artifact returns a file artifact holding data, released when the test ends.
func Artifact(tb testing.TB, data []byte) psengine.Artifact {
	tb.Helper()
	a := psengine.ArtifactFromBytes(data)
	tb.Cleanup(func() { _ = a.Close() })
	return a
}

// URLArtifact returns a URL artifact for u.
func URLArtifact(tb testing.TB, u string) psengine.Artifact {
	tb.Helper()
	a := psengine.ArtifactFromURL(u)
	tb.Cleanup(func() { _ = a.Close() })
	return a
}

// File writes data to a new file in a test temp dir and returns its path.
func File(tb testing.TB, name string, data []byte) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// SHA256 returns the lowercase hex sha256 of data.
func SHA256(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// DataURI returns a base64 data: URI holding data.
func DataURI(data []byte) string {
	return "data:application/octet-stream;base64," + base64.StdEncoding.EncodeToString(data)
}

// BountyOption adjusts a bounty made by Bounty.
type BountyOption func(*psengine.Bounty)

// Bounty returns a valid file bounty whose artifact is data (as a data:
// URI), with its sha256, the default rules, the assertion phase, id "1" and
// an expiration a minute ahead; options adjust it.
func Bounty(data []byte, opts ...BountyOption) psengine.Bounty {
	id, _ := psengine.NumberID("1")
	b := psengine.Bounty{
		ID:           id,
		ArtifactType: psengine.FileArtifact,
		ArtifactURI:  DataURI(data),
		SHA256:       SHA256(data),
		Expiration:   time.Now().Add(time.Minute).UTC(),
		Rules:        bid.DefaultRules,
		Phase:        psengine.Assertion,
	}
	for _, o := range opts {
		o(&b)
	}
	return b
}

// WithID sets the bounty's id (digits make an integer id).
func WithID(id string) BountyOption {
	return func(b *psengine.Bounty) {
		if n, err := psengine.NumberID(id); err == nil {
			b.ID = n
			return
		}
		b.ID = psengine.StringID(id)
	}
}

// WithURI sets the artifact URI (and clears the sha256, which no longer applies).
func WithURI(uri string) BountyOption {
	return func(b *psengine.Bounty) { b.ArtifactURI, b.SHA256 = uri, "" }
}

// WithResponseURL sets where the answer is delivered.
func WithResponseURL(u string) BountyOption {
	return func(b *psengine.Bounty) { b.ResponseURL = u }
}

// WithExpiration sets the expiration.
func WithExpiration(t time.Time) BountyOption {
	return func(b *psengine.Bounty) { b.Expiration = t }
}

// WithPhase sets the phase.
func WithPhase(p psengine.Phase) BountyOption {
	return func(b *psengine.Bounty) { b.Phase = p }
}

// WithRules sets the bid rules.
func WithRules(r bid.Rules) BountyOption {
	return func(b *psengine.Bounty) { b.Rules = r }
}

// WithSHA256 sets the announced sha256 (for checksum mismatch tests).
func WithSHA256(h string) BountyOption {
	return func(b *psengine.Bounty) { b.SHA256 = h }
}

// AnalysisOptions compare analyses the way an engine author means them:
// empty and nil slices and maps are equal.
var AnalysisOptions = cmp.Options{
	cmpopts.EquateEmpty(),
}

// VerdictOnly compares analyses by verdict and malware family alone.
var VerdictOnly = cmp.Options{
	cmp.Transformer("verdict", func(a psengine.Analysis) [2]string {
		return [2]string{string(a.Verdict), a.Metadata.MalwareFamily}
	}),
}

// BountyOptions compare bounties (the id's fields are unexported).
var BountyOptions = cmp.Options{
	cmp.Comparer(func(a, b psengine.BountyID) bool { return a == b }),
}
