package psenginetest

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/envdirs"
)

// Engine returns an engine over s for a test: its base directories and temp
// files are in a test temp dir (later options may replace them), and it is
// shut down when the test ends, failing the test if that fails.
func Engine(tb testing.TB, s psengine.Scanner, opts ...psengine.Option) *psengine.Engine {
	tb.Helper()
	dir := tb.TempDir()
	opts = append([]psengine.Option{psengine.WithDirs(envdirs.Dirs{Home: dir, Temp: dir})}, opts...)
	e := psengine.New(s, opts...)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			tb.Errorf("engine shutdown: %v", err)
		}
	})
	return e
}

// Analyze has e analyze data (given as a data: URI) and returns the result,
// failing the test at once if the artifact was not answered.
func Analyze(tb testing.TB, e *psengine.Engine, data []byte) psengine.Result {
	tb.Helper()
	res, _ := e.Analyze(context.Background(), DataURI(data))
	if !res.Answered {
		tb.Fatalf("not answered: %v", res.Err)
	}
	return res
}

// SyncBuffer is a bytes.Buffer safe for concurrent use: a child process's
// output written by os/exec's copier while the test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
