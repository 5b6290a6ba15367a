package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"sync"
)

// The headers of PolySwarm's webhook requests.
const (
	HeaderEvent     = "X-Polyswarm-Event"
	HeaderSignature = "X-Polyswarm-Signature"
	HeaderDelivery  = "X-Polyswarm-Delivery"
)

// Errors of Verify.
var (
	// ErrMissingSignature: the request has no signature header.
	ErrMissingSignature = errors.New("webhook: missing " + HeaderSignature + " header")
	// ErrBadSignature: the signature is not the HMAC of the body under the
	// secret (or is not 64 hex digits).
	ErrBadSignature = errors.New("webhook: signature does not match the body")
)

// Sign returns the value of the signature header for body: the lowercase hex
// HMAC-SHA256 of body keyed with secret's bytes. Clients and tests use it to
// sign requests; an empty body (a ping) is signed like any other.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether signature (the header's value) is the HMAC-SHA256 of
// body under secret. The comparison takes the same time wherever the first
// difference is. It returns nil on a match, ErrMissingSignature for an empty
// signature and an error wrapping ErrBadSignature otherwise. Upper-case hex
// digits are accepted; a "sha256=" prefix is not (PolySwarm sends none).
func Verify(secret string, body []byte, signature string) error {
	return verifyMAC(hmac.New(sha256.New, []byte(secret)), body, signature)
}

// macPool keeps keyed HMAC states of one secret for reuse: Reset brings
// one back to its keyed state, which costs less than keying a new one
// (hmac.New allocates and hashes the pads for every request).
type macPool struct{ pool sync.Pool }

func newMACPool(secret []byte) *macPool {
	key := bytes.Clone(secret)
	p := &macPool{}
	p.pool.New = func() any { return hmac.New(sha256.New, key) }
	return p
}

func (p *macPool) verify(body []byte, signature string) error {
	m := p.pool.Get().(hash.Hash)
	defer func() {
		m.Reset()
		p.pool.Put(m)
	}()
	return verifyMAC(m, body, signature)
}

// verifyMAC checks signature against the HMAC m (keyed, unused) computes
// over body.
func verifyMAC(m hash.Hash, body []byte, signature string) error {
	if signature == "" {
		return ErrMissingSignature
	}
	var got [sha256.Size]byte
	if len(signature) != hex.EncodedLen(sha256.Size) {
		return fmt.Errorf("%w: want %d hex digits, got %d characters", ErrBadSignature, hex.EncodedLen(sha256.Size), len(signature))
	}
	if _, err := hex.Decode(got[:], []byte(signature)); err != nil {
		return fmt.Errorf("%w: not hex", ErrBadSignature)
	}
	m.Write(body)
	var want [sha256.Size]byte
	if !hmac.Equal(m.Sum(want[:0]), got[:]) {
		return ErrBadSignature
	}
	return nil
}
