//go:build linux

package psengine_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
	"github.com/polyswarm/psengine/resultcache"
)

// nonce answers each scan with a value of its own (the time it ran), so
// that an answer tells which scan made it.
var nonce = psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
	return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.2,
		Metadata: psengine.Metadata{Extra: map[string]any{"scan": strconv.FormatInt(time.Now().UnixNano(), 10)}}}, nil
})

// With the process backend the parent answers from the cache: the child
// scans a file once.
func TestCacheWithProcessWorkers(t *testing.T) {
	opts := []psengine.Option{psenginetest.ProcessWorkers(t, psengine.ProcessConfig{})}
	if !psenginetest.InChild() { // the child serves its parent from New on: the cache is the parent's
		c, err := resultcache.Open(filepath.Join(t.TempDir(), resultcache.DefaultFile), resultcache.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		opts = append(opts, psengine.WithResultCache(c))
	}
	e := newEngine(t, nonce, opts...)
	first := psenginetest.Analyze(t, e, []byte("a file"))
	second := psenginetest.Analyze(t, e, []byte("a file"))
	other := psenginetest.Analyze(t, e, []byte("another file"))
	a, b, c := first.Analysis.Metadata.Extra["scan"], second.Analysis.Metadata.Extra["scan"], other.Analysis.Metadata.Extra["scan"]
	if a == nil || a != b || a == c {
		t.Errorf("scans %v, %v, %v: want the second answer from the first scan, the other file scanned", a, b, c)
	}
}
