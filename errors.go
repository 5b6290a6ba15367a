package psengine

import (
	"context"
	"errors"
	"fmt"

	"github.com/polyswarm/psengine/broker"
	"github.com/polyswarm/psengine/pipeline"
	"github.com/polyswarm/psengine/protocol"
)

// Error kinds. Every error the engine reports (to a caller or an error hook)
// wraps one of these, so errors.Is tells what went wrong, and wraps the cause,
// so errors.As still reaches a typed error such as *fetch.TooLargeError.
var (
	// ErrMalformedBounty: a bounty that cannot be parsed or misses a field.
	ErrMalformedBounty = protocol.ErrMalformedBounty
	// ErrFetch: the artifact could not be read (unreachable, too large,
	// refused by the fetch policy, checksum mismatch). Answered CANNOT_FETCH.
	ErrFetch = errors.New("psengine: cannot fetch artifact")
	// ErrUnsupported: the scanner does not handle this kind of artifact.
	// A scanner may return an error wrapping it; answered UNSUPPORTED.
	ErrUnsupported = errors.New("psengine: artifact type unsupported")
	// ErrEncrypted: the artifact is encrypted. A scanner may return an error
	// wrapping it; answered ENCRYPTED.
	ErrEncrypted = errors.New("psengine: artifact encrypted")
	// ErrScan: the scanner returned an error or panicked. Answered unknown.
	ErrScan = errors.New("psengine: scan failed")
	// ErrTimeout: the scan did not finish before its deadline. Answered unknown.
	ErrTimeout = errors.New("psengine: scan deadline exceeded")
	// ErrInvalidAnalysis: the scanner's analysis would be rejected by
	// PolySwarm (see Validate). Answered unknown.
	ErrInvalidAnalysis = protocol.ErrInvalidAnalysis
	// ErrDeliver: the answer could not be delivered to the response URL.
	ErrDeliver = errors.New("psengine: answer not delivered")
	// ErrExpired: the bounty expired before its scan could start (or
	// before intake took it); it was discarded and not answered (see
	// WithDiscardExpired).
	ErrExpired = errors.New("psengine: bounty expired")
	// ErrSetup: engine or worker setup failed.
	ErrSetup = errors.New("psengine: setup failed")
	// ErrClosed: the engine or broker is shut down and takes no new work.
	ErrClosed = broker.ErrClosed
	// ErrQueueFull: the broker cannot take the job now; retry later.
	ErrQueueFull = broker.ErrQueueFull
	// ErrDuplicate: the broker refused a job it has (or recently had):
	// its ID is pending or was settled, or its bounty's Key was taken.
	ErrDuplicate = broker.ErrDuplicate
	// ErrGivenUp: the broker gave up on the job (its attempts are spent, or
	// it ended the process each time it was scanned alone; see broker.Job.Final):
	// answered unknown, SKIPPED, without a scan, where its expiration
	// allowed, then dead-lettered.
	ErrGivenUp = errors.New("psengine: given up on")
	// ErrShutdown: the bounty was still queued or running when Shutdown's
	// deadline passed.
	ErrShutdown = errors.New("psengine: shut down before the bounty was answered")
	// ErrUnknownCommand: Engine.Command was asked for a command the scanner
	// does not expose.
	ErrUnknownCommand = errors.New("psengine: unknown command")
	// ErrPermanent marks an error that retrying cannot fix. A broker
	// dead-letters a job whose handler returns an error wrapping it.
	ErrPermanent = pipeline.ErrPermanent
)

// PanicError is a recovered panic (in a scanner, a stage or a hook) with the
// stack where it happened. The worker that recovered it lives on.
type PanicError = pipeline.PanicError

// Permanent marks err as permanent: errors.Is(err, ErrPermanent) is true and
// err stays reachable.
func Permanent(err error) error { return pipeline.Permanent(err) }

// kind wraps cause with an error kind, unless it already is of that kind.
func kind(k error, cause error) error {
	if cause == nil || errors.Is(cause, k) {
		return cause
	}
	return fmt.Errorf("%w: %w", k, cause)
}

// protect runs fn and returns its error, or a *PanicError when it panics:
// the engine calls the scanner's and the host's code through it.
func protect(fn func() error) (err error) {
	if perr := pipeline.Protect(func() { err = fn() }); perr != nil {
		return perr
	}
	return err
}

// deadlinePassed reports whether ctx ended at its bounty's deadline (cause
// ErrTimeout), rather than by a caller, a consumer or Shutdown.
func deadlinePassed(ctx context.Context) bool { return errors.Is(context.Cause(ctx), ErrTimeout) }
