package runreport_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/polyswarm/psengine/cli/runrecord"
	"github.com/polyswarm/psengine/cli/runreport"
	"github.com/polyswarm/psengine/psenginetest"
)

// BenchmarkReport2000 times the report of a 2,000-artifact run, from the
// record's bytes to the page (the target: under 2 s), beside its baseline
// in the same run, reading the record alone.
func BenchmarkReport2000(b *testing.B) {
	data := syntheticRecord(b, 2000)
	b.Run("read", func(b *testing.B) {
		defer psenginetest.MeasureCPU(b)()
		for b.Loop() {
			if _, err := runrecord.Read(bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("read+report", func(b *testing.B) {
		defer psenginetest.MeasureCPU(b)()
		for b.Loop() {
			run, err := runrecord.Read(bytes.NewReader(data))
			if err != nil {
				b.Fatal(err)
			}
			if err := runreport.WriteReport(io.Discard, run, "run.json"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
