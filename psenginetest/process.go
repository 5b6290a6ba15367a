package psenginetest

import (
	"regexp"
	"strings"
	"testing"

	"github.com/polyswarm/psengine"
)

// ProcessWorkers returns the option that runs an engine's scans in child
// processes (psengine.WithProcessWorkers with c) from a test or a
// benchmark. The children are the test binary, re-executed to run only
// tb's test (or benchmark, once): it runs again from its start up to
// psengine.New, which then serves the parent. So in
// such a test, make the engine first (what runs before New runs in every
// child too). The children's TMPDIR is a temp directory of tb's, removed
// with it.
func ProcessWorkers(tb testing.TB, c psengine.ProcessConfig) psengine.Option {
	tb.Helper()
	c.Args = []string{"-test.run=" + RunPattern(tb.Name()), "-test.count=1"}
	if _, ok := tb.(*testing.B); ok {
		c.Args = []string{"-test.run=^$", "-test.bench=" + RunPattern(tb.Name()), "-test.benchtime=1x", "-test.count=1"}
	}
	c.Env = append(append([]string(nil), c.Env...), "TMPDIR="+tb.TempDir())
	return psengine.WithProcessWorkers(c)
}

// RunPattern is the -test.run pattern that selects exactly the test (or
// subtest) named name, as testing.T.Name reports it.
func RunPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// InChild reports whether this process is a worker child started by the
// process backend (see ProcessWorkers): a test can skip work that only the
// parent needs.
func InChild() bool { return psengine.IsWorkerChild() }
