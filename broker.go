package psengine

import (
	"time"

	"github.com/polyswarm/psengine/broker"
)

// The queue behind Submit and Serve: package broker's contract, under the
// names a host uses (see that package for the rules every broker keeps).
type (
	// Job is one bounty travelling through a Broker.
	Job = broker.Job
	// Broker is the queue behind Engine.Submit and Engine.Serve.
	Broker = broker.Broker
	// Handler processes one job.
	Handler = broker.Handler
	// AnswerKeeper is a Broker that keeps a job's answer for its redeliveries.
	AnswerKeeper = broker.AnswerKeeper
	// ScanMarker is a Broker that records which jobs are being scanned.
	ScanMarker = broker.ScanMarker
	// DeadLetter is a job a broker gave up on, with the reason.
	DeadLetter = broker.DeadLetter
	// DeadLetterStore is a Broker whose dead letters an operator can see
	// and act on.
	DeadLetterStore = broker.DeadLetterStore
	// MemoryBroker is the in-process Broker, the engine's default.
	MemoryBroker = broker.Memory
	// MemoryBrokerConfig configures a MemoryBroker.
	MemoryBrokerConfig = broker.MemoryConfig
)

const (
	MaxKeyRetention  = broker.MaxKeyRetention
	DefaultKeyWindow = broker.DefaultKeyWindow
)

// NewMemoryBroker returns an empty, open MemoryBroker.
func NewMemoryBroker(cfg MemoryBrokerConfig) *MemoryBroker { return broker.NewMemory(cfg) }

// NewJob makes the job for b, taken by intake at now (see broker.NewJob).
func NewJob(id string, b Bounty, now time.Time, window time.Duration) (Job, error) {
	return broker.NewJob(id, b, now, window)
}

// BountyKey identifies a bounty by what it asks, whatever delivery brought it.
func BountyKey(b Bounty) string { return broker.BountyKey(b) }

// KeyRetention is how long a broker remembers a job's Key, from its Submit
// at now (see broker.KeyRetention).
func KeyRetention(b Bounty, now time.Time, window time.Duration) time.Time {
	return broker.KeyRetention(b, now, window)
}
