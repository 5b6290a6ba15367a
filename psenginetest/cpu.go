package psenginetest

import (
	"testing"
	"time"
)

// MeasureCPU starts counting the CPU time of the whole process (user and
// system time of every thread: the benchmark's goroutines, the ones they
// start, the garbage collector) and returns a function that stops counting
// and reports it as the metric "cpu-ns/op", beside the wall time of ns/op.
// On a shared, noisy machine the CPU time of a benchmark moves less than its
// wall time. Call it just before the measured loop:
//
//	defer psenginetest.MeasureCPU(b)()
//	for b.Loop() { ... }
//
// Where the platform has no process CPU clock, nothing is reported.
func MeasureCPU(b *testing.B) (stop func()) {
	start, ok := processCPU()
	if !ok {
		return func() {}
	}
	return func() {
		end, _ := processCPU()
		if b.N > 0 {
			b.ReportMetric(float64((end-start)/time.Nanosecond)/float64(b.N), "cpu-ns/op")
		}
	}
}
