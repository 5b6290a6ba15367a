package broker_test

import (
	"testing"
	"time"

	"github.com/polyswarm/psengine/broker"
	"github.com/polyswarm/psengine/pipeline"
	"github.com/polyswarm/psengine/psenginetest"
)

// TestMemoryConformance holds the reference broker to the rules every
// broker keeps.
func TestMemoryConformance(t *testing.T) {
	psenginetest.TestBroker(t, func(t *testing.T) psenginetest.BrokerHarness {
		b := broker.NewMemory(broker.MemoryConfig{MaxAttempts: 3, Backoff: pipeline.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}})
		return psenginetest.BrokerHarness{
			Broker:      b,
			MaxAttempts: 3,
			Keys:        true,
			DeadLetters: b.DeadLetters,
		}
	})
}
