package fetch_test

import (
	"testing"

	"github.com/polyswarm/psengine/fetch"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(closingM{m}) }

// closingM runs the tests, then drops the default client's idle keep-alive
// connections (not leaks: a pool) before goleak looks for leftover goroutines.
type closingM struct{ m *testing.M }

func (c closingM) Run() int {
	code := c.m.Run()
	fetch.CloseIdleConnections()
	return code
}
