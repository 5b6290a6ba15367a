package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/fetch"
)

// BenchmarkMemoryFile: the two ways to hand clamd a descriptor for content
// held only in memory, in the same run: a memfd (memoryFile) against the
// artifact's temp file (Path, under the policy's TempDir, then opened).
// Each op fetches fresh content (as a bounty does), makes the file and
// releases both; metric ratio = memfd/tempfile time (the baseline, the
// fetch alone, is measured too).
//
//	go test -run '^$' -bench MemoryFile ./examples/clamav/engine
func BenchmarkMemoryFile(b *testing.B) {
	data := make([]byte, 32<<10)
	_, _ = rand.Read(data)
	policy := fetch.Policy{TempDir: b.TempDir(), TempPrefix: "clamav-bench-"}
	artifact := func() psengine.Artifact {
		c, err := policy.FromReader(context.Background(), bytes.NewReader(data), "")
		if err != nil {
			b.Fatal(err)
		}
		return psengine.NewArtifact(psengine.FileArtifact, "", c)
	}
	var tMem, tTemp, tFetch time.Duration
	for b.Loop() {
		start := time.Now()
		a := artifact()
		a.Close()
		tFetch += time.Since(start)

		start = time.Now()
		a = artifact()
		f, err := memoryFile(a)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
		a.Close()
		tMem += time.Since(start)

		start = time.Now()
		a = artifact()
		if f, err = pathFile(a); err != nil {
			b.Fatal(err)
		}
		f.Close()
		a.Close()
		tTemp += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(float64((tMem-tFetch).Nanoseconds())/n, "memfd-ns")
	b.ReportMetric(float64((tTemp-tFetch).Nanoseconds())/n, "tempfile-ns")
	b.ReportMetric(float64(tMem)/float64(tTemp), "ratio")
}
