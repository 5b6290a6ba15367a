package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/cli/runrecord"
)

// analyzed is one artifact's result with the time it took: the engine's
// time on it (fetch, scan, bid...) with the local and process backends;
// from submission to answer, queue included, with a queue backend. Zero
// for an artifact that never reached an engine (a walk error).
type analyzed struct {
	name string
	res  psengine.Result
	took time.Duration
}

// summary accumulates the results of one analyze run.
type summary struct {
	start      time.Time
	queued     bool // times include the queue (a queue backend)
	artifacts  int
	unanswered int
	verdicts   map[psengine.Verdict]int
	skipped    map[string]int // special answers, by their SKIPPED:* comment
	errors     map[string]int // by kind (errorKind)
	bids       []int64
	times      []time.Duration
}

func newSummary(queued bool) *summary {
	return &summary{start: time.Now(), queued: queued, verdicts: map[psengine.Verdict]int{},
		skipped: map[string]int{}, errors: map[string]int{}}
}

func (s *summary) add(o analyzed) {
	s.artifacts++
	if o.took > 0 && o.res.Answered { // the time an answer took, not a wait given up
		s.times = append(s.times, o.took)
	}
	if o.res.Err != nil {
		s.errors[errorKind(o.res.Err)]++
	}
	if !o.res.Answered {
		s.unanswered++
		return
	}
	a := o.res.Analysis
	s.verdicts[a.Verdict]++
	for _, c := range a.Metadata.Comments {
		if strings.HasPrefix(c, "SKIPPED") {
			s.skipped[c]++
		}
	}
	if a.Bid > 0 {
		s.bids = append(s.bids, a.Bid)
	}
}

// errorKinds name the error kinds in the summary, most specific first.
var errorKinds = []struct {
	err  error
	name string
}{
	{ErrSymlinkOutside, "symlink-outside"},
	{ErrNotRegular, "not-regular"},
	{ErrEmptyDir, "empty-dir"},
	{ErrStalled, "stalled"},
	{psengine.ErrMalformedBounty, "malformed-bounty"},
	{psengine.ErrFetch, "fetch"},
	{psengine.ErrUnsupported, "unsupported"},
	{psengine.ErrEncrypted, "encrypted"},
	{psengine.ErrTimeout, "timeout"},
	{psengine.ErrInvalidAnalysis, "invalid-analysis"},
	{psengine.ErrScan, "scan"},
	{psengine.ErrDeliver, "deliver"},
	{psengine.ErrExpired, "expired"},
	{psengine.ErrSetup, "setup"},
	{psengine.ErrQueueFull, "queue-full"},
	{psengine.ErrShutdown, "shutdown"},
	{psengine.ErrClosed, "closed"},
	{context.Canceled, "canceled"},
	{context.DeadlineExceeded, "deadline"},
	{fs.ErrNotExist, "not-found"},
	{fs.ErrPermission, "permission"},
}

// errorKind names the kind of err for the summary ("other" when it wraps
// none of the known ones).
func errorKind(err error) string {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "other"
}

// summaryJSON is the --summary-json document, and a run record's last
// line.
type summaryJSON = runrecord.Summary

// rank returns the nearest-rank p-th percentile of sorted (p in (0, 1]).
func rank[T any](sorted []T, p float64) T {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func (s *summary) report() summaryJSON {
	r := summaryJSON{
		Artifacts: s.artifacts, Unanswered: s.unanswered, Answered: s.artifacts - s.unanswered,
		Seconds:  time.Since(s.start).Seconds(),
		Verdicts: map[string]int{}, Skipped: maps.Clone(s.skipped), Errors: maps.Clone(s.errors),
		QueueIncluded: s.queued,
	}
	for v, n := range s.verdicts {
		r.Verdicts[string(v)] = n
	}
	if len(s.bids) > 0 {
		b := slices.Sorted(slices.Values(s.bids))
		r.Bids = &runrecord.BidStats{Count: len(b), Min: b[0], Median: rank(b, 0.5), Max: b[len(b)-1]}
	}
	if len(s.times) > 0 {
		t := slices.Sorted(slices.Values(s.times))
		r.ScanTime = &runrecord.TimeStats{Count: len(t), P50: rank(t, 0.5).Seconds(), P95: rank(t, 0.95).Seconds(), Max: t[len(t)-1].Seconds()}
	}
	return r
}

// counts formats a count map as "a 3, b 1", largest first.
func counts(m map[string]int) string {
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		return cmp.Or(cmp.Compare(m[b], m[a]), strings.Compare(a, b))
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + strconv.Itoa(m[k])
	}
	return strings.Join(parts, ", ")
}

// write prints the summary for people.
func (s *summary) write(w io.Writer) error {
	r := s.report()
	var b strings.Builder
	fmt.Fprintf(&b, "summary: %d artifacts in %s", r.Artifacts, roundDuration(time.Duration(r.Seconds*float64(time.Second))))
	if r.Seconds > 0 {
		fmt.Fprintf(&b, " (%.1f/s)", float64(r.Artifacts)/r.Seconds)
	}
	b.WriteString("\n")
	if len(r.Verdicts) > 0 {
		fmt.Fprintf(&b, "  verdicts: %s\n", counts(r.Verdicts))
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintf(&b, "  skipped: %s\n", counts(r.Skipped))
	}
	if r.Unanswered > 0 {
		fmt.Fprintf(&b, "  unanswered: %d\n", r.Unanswered)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(&b, "  errors: %s\n", counts(r.Errors))
	} else {
		b.WriteString("  errors: none\n")
	}
	if r.Bids != nil {
		fmt.Fprintf(&b, "  bids (NCT): min %s, median %s, max %s (%d bids)\n",
			formatNCT(r.Bids.Min), formatNCT(r.Bids.Median), formatNCT(r.Bids.Max), r.Bids.Count)
	}
	if r.ScanTime != nil {
		what := "scan time"
		if r.QueueIncluded {
			what = "time to answer (queue included)"
		}
		sec := func(f float64) string { return roundDuration(time.Duration(f * float64(time.Second))) }
		fmt.Fprintf(&b, "  %s: p50 %s, p95 %s, max %s\n", what, sec(r.ScanTime.P50), sec(r.ScanTime.P95), sec(r.ScanTime.Max))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// roundDuration keeps three significant digits or so.
func roundDuration(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

// formatNCT writes an amount of NCT-wei (10^18 per NCT) as an exact decimal
// number of NCT.
func formatNCT(wei int64) string {
	s := new(big.Rat).SetFrac64(wei, 1e18).FloatString(18)
	return strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
}
