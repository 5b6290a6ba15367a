package cli

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/polyswarm/psengine"
)

// DefaultWorkers sets how many artifacts analyze scans at once when
// --workers is not given.
func TestDefaultWorkers(t *testing.T) {
	for _, c := range []struct {
		defaults int
		args     []string
		want     int32
	}{
		{0, nil, 4},
		{8, nil, 8},
		{8, []string{"--workers", "2"}, 2},
	} {
		synctest.Test(t, func(t *testing.T) {
			var running atomic.Int32
			release := make(chan struct{})
			scanner := psengine.ScannerFunc(func(ctx context.Context, _ psengine.Env, _ psengine.Artifact) (psengine.Analysis, error) {
				running.Add(1)
				<-release
				return psengine.Analysis{Verdict: psengine.Unknown}, nil
			})
			home := t.TempDir()
			var stdout, stderr bytes.Buffer
			p := &Program{Name: "test", Scanner: scanner, DefaultWorkers: c.defaults, Stdout: &stdout, Stderr: &stderr,
				Getenv: func(k string) string {
					if k == "PSENGINE_HOME" {
						return home
					}
					return ""
				}}
			args := append([]string{"analyze", "--json"}, c.args...)
			for i := range 16 {
				args = append(args, "data:,artifact-"+strings.Repeat("x", i))
			}
			done := make(chan int)
			go func() { done <- p.Run(context.Background(), args) }()
			synctest.Wait() // every worker is in a scan, the rest wait for one
			if got := running.Load(); got != c.want {
				t.Errorf("DefaultWorkers %d %v: %d scans at once, want %d", c.defaults, c.args, got, c.want)
			}
			close(release)
			if code := <-done; code != 0 {
				t.Fatalf("DefaultWorkers %d %v: exit %d: %s", c.defaults, c.args, code, stderr.String())
			}
		})
	}
}
