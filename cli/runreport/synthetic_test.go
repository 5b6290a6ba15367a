package runreport_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/cli/runrecord"
)

// syntheticRecord writes the record of an n-artifact run that has a bit of
// everything: every verdict, confidences across the range, times from
// 100µs to seconds, errors of several kinds, 40 families of very unequal
// sizes. It is the same for the same n.
func syntheticRecord(tb testing.TB, n int) []byte {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	var buf bytes.Buffer
	start := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	w, err := runrecord.NewWriter(&buf, runrecord.Header{Engine: "synthetic", Started: start, Backend: "local",
		Kind: "file", Inputs: []string{"/srv/corpus"}})
	if err != nil {
		tb.Fatal(err)
	}
	scanner := runrecord.Scanner{Product: "synthetic", Version: "1.2.0", VendorVersion: "4.3.2", SignaturesVersion: "2026-05-01"}
	errorKinds := []string{"timeout", "scan", "unsupported", "not-found", "encrypted"}
	sum := runrecord.Summary{Artifacts: n, Verdicts: map[string]int{}, Skipped: map[string]int{}, Errors: map[string]int{}}
	for i := range n {
		h := sha256.Sum256(fmt.Appendf(nil, "sample %d", i))
		f := runrecord.File{Path: fmt.Sprintf("/srv/corpus/%02d/sample-%05d.bin", i%17, i), SHA256: hex.EncodeToString(h[:]),
			Seconds: 1e-4 * math.Exp(rng.Float64()*rng.Float64()*10)} // mostly fast, a long tail
		switch r := rng.IntN(100); {
		case r < 45:
			f.Verdict, f.Confidence = psengine.Malicious, 0.5+rng.Float64()/2
			f.Family = fmt.Sprintf("Family.%c%d", 'A'+rune(i%5), int(math.Sqrt(float64(rng.IntN(1600)))))
		case r < 50:
			f.Verdict, f.Confidence, f.Family = psengine.Suspicious, 0.4+rng.Float64()/4, "Heur.Packed"
		case r < 85:
			f.Verdict, f.Confidence = psengine.Benign, rng.Float64()/3
		case r < 95:
			f.Verdict, f.Error = psengine.Unknown, errorKinds[rng.IntN(3)]
			f.Message = fmt.Sprintf("%s: %s while scanning %s", f.Error, "the engine gave up", f.Path)
			if f.Error == "timeout" {
				f.Seconds = 30 + rng.Float64()
			}
		default:
			f.Error, f.Seconds = errorKinds[3+rng.IntN(2)], 0
			f.Message = "open " + f.Path + ": no such file or directory"
		}
		if err := w.WriteFile(f, scanner); err != nil {
			tb.Fatal(err)
		}
		if f.Answered() {
			sum.Answered++
			sum.Verdicts[string(f.Verdict)]++
		} else {
			sum.Unanswered++
		}
		if f.Error != "" {
			sum.Errors[f.Error]++
		}
		sum.Seconds += f.Seconds / 4
	}
	if err := w.WriteSummary(sum); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}
