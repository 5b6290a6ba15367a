package natsq

import (
	"errors"
	"fmt"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine"
)

var (
	// ErrBadConfig: a Config field is out of range.
	ErrBadConfig = errors.New("natsq: bad config")
	// ErrNotProvisioned: the streams, consumer or buckets are missing on
	// the server; call Provision.
	ErrNotProvisioned = errors.New("natsq: queue not provisioned")
	// ErrMalformedJob: a message on the job stream is not a job this
	// package wrote. Such messages are dead-lettered at once.
	ErrMalformedJob = errors.New("natsq: malformed job message")
	// ErrDeadLettered: the job was moved to the dead-letter stream; the
	// error is a *DeadLetterError with the reason.
	ErrDeadLettered = errors.New("natsq: job dead-lettered")
	// ErrNoAnswer: Analyze stopped waiting before a bounty was answered.
	ErrNoAnswer = errors.New("natsq: no answer")
	// ErrArtifact: a staged artifact could not be stored or read.
	ErrArtifact = errors.New("natsq: artifact store")
)

// DeadLetterError says why a job was dead-lettered. It matches
// ErrDeadLettered, and psengine.ErrPermanent when its handler said the
// failure was permanent.
type DeadLetterError struct {
	// Reason is why: the handler's permanent error, the last call's
	// reason (the failure that spent the attempts, or the worker deaths),
	// or why the message is not a job.
	Reason     string
	Deliveries int  // how many times the server delivered the job (hand-backs and lapses included)
	Attempts   int  // how many of them counted as attempts (broker.Job.Attempt)
	Permanent  bool // the handler returned an error wrapping psengine.ErrPermanent
}

func (e *DeadLetterError) Error() string {
	kind := "gave up"
	if e.Permanent {
		kind = "permanent failure"
	}
	return fmt.Sprintf("natsq: dead-lettered after %d attempts in %d deliveries (%s): %s", e.Attempts, e.Deliveries, kind, e.Reason)
}

// Is reports ErrDeadLettered, and psengine.ErrPermanent for a permanent one.
func (e *DeadLetterError) Is(target error) bool {
	return target == ErrDeadLettered || (e.Permanent && target == psengine.ErrPermanent)
}

// DeadLetter is a job this package dead-lettered, with its reason (a
// *DeadLetterError).
type DeadLetter = broker.DeadLetter
