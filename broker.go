package psengine

import (
	"time"

	"github.com/polyswarm/psengine/broker"
)

// The queue's names moved to package broker, the contract brokers
// implement; these aliases keep code written against the old names
// building.
type (
	// Deprecated: use broker.Job.
	Job = broker.Job
	// Deprecated: use broker.Broker.
	Broker = broker.Broker
	// Deprecated: use broker.Handler.
	Handler = broker.Handler
	// Deprecated: use broker.AnswerKeeper.
	AnswerKeeper = broker.AnswerKeeper
	// Deprecated: use broker.ScanMarker.
	ScanMarker = broker.ScanMarker
	// Deprecated: use broker.DeadLetter.
	DeadLetter = broker.DeadLetter
	// Deprecated: use broker.DeadLetterStore.
	DeadLetterStore = broker.DeadLetterStore
	// Deprecated: use broker.Memory.
	MemoryBroker = broker.Memory
	// Deprecated: use broker.MemoryConfig.
	MemoryBrokerConfig = broker.MemoryConfig
)

// Deprecated: use broker.ErrNoDeadLetter.
var ErrNoDeadLetter = broker.ErrNoDeadLetter

// Deprecated: use broker.MaxKeyRetention.
const MaxKeyRetention = broker.MaxKeyRetention

// Deprecated: use broker.DefaultKeyWindow.
const DefaultKeyWindow = broker.DefaultKeyWindow

// Deprecated: use broker.NewMemory.
func NewMemoryBroker(cfg MemoryBrokerConfig) *MemoryBroker { return broker.NewMemory(cfg) }

// Deprecated: use broker.NewJob.
func NewJob(id string, b Bounty, now time.Time, window time.Duration) (Job, error) {
	return broker.NewJob(id, b, now, window)
}

// Deprecated: use broker.BountyKey.
func BountyKey(b Bounty) string { return broker.BountyKey(b) }

// Deprecated: use broker.KeyRetention.
func KeyRetention(b Bounty, now time.Time, window time.Duration) time.Time {
	return broker.KeyRetention(b, now, window)
}
