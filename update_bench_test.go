package psengine_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
)

var benchDefs = psengine.NewKey[int64]("bench.defs")

// swapScanner's definitions are a version number: Update returns the next
// one, Describe reports it, Release counts the replaced ones. Everything
// is cheap, so that what is measured is the engine's swap.
type swapScanner struct {
	next     atomic.Int64
	released atomic.Int64
}

func (s *swapScanner) SetupEngine(_ context.Context, env psengine.Env) (psengine.Env, error) {
	return benchDefs.With(env, 0), nil
}

func (s *swapScanner) Update(_ context.Context, env psengine.Env) (psengine.Env, error) {
	return benchDefs.With(env, s.next.Add(1)), nil
}

func (s *swapScanner) Describe(_ context.Context, env psengine.Env) (psengine.Metadata, error) {
	v, _ := benchDefs.Value(env)
	return psengine.Metadata{Scanner: psengine.ScannerInfo{SignaturesVersion: strconv.FormatInt(v, 10)}}, nil
}

func (s *swapScanner) Release(context.Context, psengine.Env) error {
	s.released.Add(1)
	return nil
}

func (s *swapScanner) Scan(ctx context.Context, env psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	return zeroScanner(ctx, env, a)
}

// BenchmarkAnalyzeDuringUpdates: an update swap does not pause scanning.
// Analyze of 4 KiB data: artifacts, one call at a time on an engine of two
// workers, alternating every 50 ms between two modes: a goroutine woken
// every 10 ms that calls Update each time (100 swaps/s, reported as
// swaps/s), and the same goroutine woken without updating (the baseline). Reported: the p99 of
// the per-call latency in each mode and their ratio. Target: p99-ratio at
// most 1.2.
func BenchmarkAnalyzeDuringUpdates(b *testing.B) {
	s := &swapScanner{}
	e := psengine.New(s, benchDirs(b), psengine.WithWorkers(2))
	ctx := context.Background()
	defer e.Shutdown(ctx)
	if err := e.Start(ctx); err != nil {
		b.Fatal(err)
	}
	uris := dataURIs(b, 64, 4096)
	for i := range 500 { // warm up: pools, the page cache, the scheduler
		if _, err := e.Analyze(ctx, uris[i%len(uris)]); err != nil {
			b.Fatal(err)
		}
	}

	var swapping atomic.Bool
	var swaps atomic.Int64
	var swapTime time.Duration // time spent in the swapping mode
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		// Every 10 ms on average: a wake-up delayed by a busy CPU is
		// caught up at once rather than dropped, as a ticker would.
		timer := time.NewTimer(0)
		defer timer.Stop()
		next := time.Now()
		for {
			next = next.Add(10 * time.Millisecond)
			timer.Reset(time.Until(next))
			select {
			case <-stop:
				return
			case <-timer.C:
			}
			if !swapping.Load() {
				continue
			}
			if err := e.Update(ctx); err != nil {
				b.Error(err)
				return
			}
			swaps.Add(1)
		}
	})

	const block = 50 * time.Millisecond
	var idle, during []time.Duration
	blockStart := time.Now()
	for i := 0; b.Loop(); i++ {
		if now := time.Now(); now.Sub(blockStart) >= block {
			if swapping.Load() {
				swapTime += now.Sub(blockStart)
			}
			swapping.Store(!swapping.Load())
			blockStart = now
		}
		on := swapping.Load()
		t0 := time.Now()
		res, err := e.Analyze(ctx, uris[i%len(uris)])
		d := time.Since(t0)
		if err != nil || res.Analysis.Verdict != psengine.Benign {
			b.Fatalf("%v %+v", err, res.Analysis)
		}
		if on {
			during = append(during, d)
		} else {
			idle = append(idle, d)
		}
	}
	if swapping.Load() {
		swapTime += time.Since(blockStart)
	}
	close(stop)
	wg.Wait()

	if len(idle) < 100 || len(during) < 100 {
		b.Logf("too few calls for a p99 (%d idle, %d during swaps): run longer (-benchtime)", len(idle), len(during))
		return
	}
	p99 := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)*99/100])
	}
	pIdle, pSwap := p99(idle), p99(during)
	b.ReportMetric(pIdle, "p99-idle-ns")
	b.ReportMetric(pSwap, "p99-swaps-ns")
	b.ReportMetric(pSwap/pIdle, "p99-ratio")
	if swapTime > 0 {
		b.ReportMetric(float64(swaps.Load())/swapTime.Seconds(), "swaps/s")
	}
	if v := e.Env().Head().Scanner.SignaturesVersion; v != strconv.FormatInt(s.next.Load(), 10) {
		b.Errorf("head signatures_version %s after %d updates", v, s.next.Load())
	}
}
