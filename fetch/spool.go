package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
)

// chunkSize is the read size for streams over the memory limit and for
// hashing local files.
const chunkSize = 128 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// limits are a Policy's settings with defaults applied.
type limits struct {
	max    int64 // largest content accepted
	memCap int64 // largest content kept in memory (<= max)
	dir    string
	prefix string
}

// pass is one streaming read: it hashes, counts and keeps the head of what
// goes through it.
type pass struct {
	ctx  context.Context
	what string // the source, for error messages
	h    hash.Hash
	n    int64
	head []byte // filled only when the content does not stay in memory
}

func newPass(ctx context.Context, what string) *pass {
	return &pass{ctx: ctx, what: what, h: sha256.New()}
}

// read is r.Read with a cancellation check before each call and protection
// against readers that make no progress.
func (p *pass) read(r io.Reader, b []byte) (int, error) {
	for range 100 {
		if p.ctx.Err() != nil {
			return 0, errCancelled
		}
		n, err := r.Read(b)
		if n > 0 || err != nil {
			return n, err
		}
	}
	return 0, io.ErrNoProgress
}

// take accounts for b, read from the source.
func (p *pass) take(b []byte, keepHead bool) {
	p.h.Write(b)
	p.n += int64(len(b))
	if keepHead && len(p.head) < HeadSize {
		if p.head == nil {
			p.head = make([]byte, 0, HeadSize)
		}
		p.head = append(p.head, b[:min(len(b), HeadSize-len(p.head))]...)
	}
}

func (p *pass) sum() string {
	var sum [sha256.Size]byte
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], p.h.Sum(sum[:0]))
	return string(h[:])
}

// errCancelled is internal: pass.fail turns it into the context's error.
var errCancelled = errors.New("cancelled")

// fail turns an error met while reading into the error Fetch returns.
func (p *pass) fail(err error) error {
	if p.ctx.Err() != nil {
		return cancelledError(p.ctx, p.what)
	}
	var tooLarge *TooLargeError
	if errors.As(err, &tooLarge) || errors.Is(err, ErrMalformedURI) || errors.Is(err, ErrUnreachable) {
		return err
	}
	return fmt.Errorf("%w: reading %s: %w", ErrUnreachable, p.what, err)
}

// cancelledError reports a fetch stopped by ctx; it matches ctx.Err() and,
// when different, context.Cause(ctx).
func cancelledError(ctx context.Context, what string) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if cause == nil || cause == err {
		return fmt.Errorf("fetch: %s: %w", what, err)
	}
	return fmt.Errorf("fetch: %s: %w: %w", what, err, cause)
}

// spool reads r to its end in one pass: hashing, enforcing the size cap,
// keeping the head, holding up to l.memCap bytes in memory and spilling
// larger content to a temp file. hint is the size announced by the source
// (-1 when unknown); content over the cap fails at once when announced, and
// otherwise as soon as the cap is passed. On error or panic nothing is left
// behind. It does not close r.
func (l limits) spool(ctx context.Context, r io.Reader, hint int64, what string) (c *Content, err error) {
	if hint > l.max {
		return nil, &TooLargeError{Limit: l.max, Size: hint}
	}
	p := newPass(ctx, what)
	var spill *os.File
	defer func() {
		if c == nil && spill != nil { // error or panic
			spill.Close()
			os.Remove(spill.Name())
		}
	}()

	// Memory phase: read into mem until the source ends or mem reaches memCap.
	var mem []byte
	switch {
	case hint > l.memCap:
		// Announced larger than memory allows: spill from the first byte.
	case hint >= 0:
		mem = make([]byte, 0, hint)
	default:
		mem = make([]byte, 0, min(l.memCap, 32<<10))
	}
	var probe []byte // a byte read past a full mem, before spilling
	srcDone := false
	for mem != nil {
		if len(mem) < cap(mem) {
			n, err := p.read(r, mem[len(mem):cap(mem)])
			p.take(mem[len(mem):len(mem)+n], false)
			mem = mem[:len(mem)+n]
			if err == io.EOF {
				return newMemContent(mem, p.sum(), l.dir, l.prefix), nil
			} else if err != nil {
				return nil, p.fail(err)
			}
			continue
		}
		// mem is full: look for one more byte before growing or spilling, so
		// that an exact size hint costs no copy.
		probe = make([]byte, 1)
		n, err := p.read(r, probe)
		if n == 0 {
			if err == io.EOF {
				return newMemContent(mem, p.sum(), l.dir, l.prefix), nil
			}
			return nil, p.fail(err)
		}
		if err != nil && err != io.EOF {
			return nil, p.fail(err)
		}
		srcDone = err == io.EOF
		if int64(len(mem)) == l.memCap {
			break // over the memory limit: spill
		}
		grown := make([]byte, len(mem), min(max(2*int64(cap(mem)), 32<<10), l.memCap))
		copy(grown, mem)
		mem = append(grown, probe[0])
		p.take(probe, false)
		probe = nil
		if srcDone {
			return newMemContent(mem, p.sum(), l.dir, l.prefix), nil
		}
	}

	// Spill phase: what is in memory, then the rest of the stream, goes to a
	// temp file.
	if p.n+int64(len(probe)) > l.max {
		return nil, &TooLargeError{Limit: l.max, Size: -1}
	}
	spill, err = createTemp(l.dir, l.prefix)
	if err != nil {
		return nil, err
	}
	p.head = append(make([]byte, 0, HeadSize), mem[:min(len(mem), HeadSize)]...)
	if err := writeAll(spill, mem); err != nil {
		return nil, err
	}
	mem = nil
	p.take(probe, true)
	if err := writeAll(spill, probe); err != nil {
		return nil, err
	}
	if !srcDone {
		if err := l.stream(p, r, spill); err != nil {
			return nil, err
		}
	}
	if err := spill.Close(); err != nil {
		return nil, fmt.Errorf("%w: writing temp file: %w", ErrUnreachable, err)
	}
	return &Content{sum: p.sum(), size: p.n, head: p.head[:len(p.head):len(p.head)], temp: spill.Name(),
		tempDir: l.dir, tempPrefix: l.prefix}, nil
}

func writeAll(f *os.File, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("%w: writing temp file: %w", ErrUnreachable, err)
	}
	return nil
}

// stream reads the rest of r through p, in chunks, and writes it to w
// unless w is nil. It stops one byte past l.max, with a *TooLargeError.
func (l limits) stream(p *pass, r io.Reader, w *os.File) error {
	bufp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bufp)
	buf := *bufp
	for {
		// Read at most one byte past the cap, to tell "exactly max" from "over".
		b := buf[:min(int64(len(buf)), l.max+1-p.n)]
		n, err := p.read(r, b)
		if n > 0 {
			p.take(b[:n], true)
			if p.n > l.max {
				return &TooLargeError{Limit: l.max, Size: -1}
			}
			if w != nil {
				if werr := writeAll(w, b[:n]); werr != nil {
					return werr
				}
			}
		}
		if err == io.EOF {
			return nil
		} else if err != nil {
			return p.fail(err)
		}
	}
}
