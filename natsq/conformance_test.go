package natsq_test

import (
	"testing"

	"github.com/polyswarm/psengine/psenginetest"
)

func TestBrokerConformance(t *testing.T) {
	nc := connect(t, startServer(t, ""))
	psenginetest.TestBroker(t, func(t *testing.T) psenginetest.BrokerHarness {
		cfg := fastConfig()
		b := newBroker(t, nc, cfg)
		return psenginetest.BrokerHarness{Broker: b, DeadLetters: b.DeadLetters, MaxAttempts: cfg.MaxAttempts, Keys: true}
	})
}
