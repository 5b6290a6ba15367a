// Package runreport renders analyze run records (package runrecord) as
// HTML pages for the engine's author: the report of a run, and the
// changes from one run to another. A page is self-contained: its style is
// inline, its charts are inline SVG laid out here, it has no script and
// loads nothing.
package runreport

import (
	"cmp"
	"embed"
	"fmt"
	"html/template"
	"io"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/cli/runrecord"
)

// Chart colors: each chart of the report has colors no other chart of it
// uses.
const (
	colorConfidence = "#2e86de"
	colorTime       = "#8e44ad"
	colorErrors     = "#b7950b"
	colorFamilies   = "#16a085"
)

// verdictColors color the verdict chart; "" is no answer.
var verdictColors = map[psengine.Verdict]string{
	psengine.Malicious:  "#c0392b",
	psengine.Suspicious: "#e67e22",
	psengine.Benign:     "#27ae60",
	psengine.Unknown:    "#95a5a6",
	"":                  "#34495e",
}

// Limits of what a report lists.
const (
	slowestShown    = 15 // the slowest files
	examplesShown   = 3  // errors of each kind
	familiesCharted = 25
)

//go:embed page.html
var pageFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"px":      func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"seconds": formatSeconds,
	"conf":    func(c float64) string { return fmt.Sprintf("%.2f", c) },
	"path":    func(p string) string { s, _ := cutLeft(p, 80); return s },
}).ParseFS(pageFS, "page.html"))

// reportPage is the report template's data.
type reportPage struct {
	Title, Name  string
	Run          *runrecord.Run
	Generated    string
	Cards        []card
	Verdicts     chart
	VerdictRows  []verdictRow
	Confidence   chart
	NoConfidence int // answers without a confidence
	Times        chart
	Timed        int
	Slowest      []runrecord.File
	Errors       chart
	ErrorKinds   []errorKind
	Families     chart
	MoreFamilies []bar // past the chart
}

type card struct{ Value, Label string }

type verdictRow struct {
	Verdict          string
	Count            int
	Share            string
	MedianConfidence string
}

type errorKind struct {
	Kind     string
	Count    int
	Examples []runrecord.File
}

// WriteReport writes the report of run, a record named name (its file,
// shown in the page), to w.
func WriteReport(w io.Writer, run *runrecord.Run, name string) error {
	p := reportPage{Name: name, Run: run, Generated: time.Now().UTC().Format(time.RFC3339),
		Title: fmt.Sprintf("%s run of %s", run.Header.Engine, run.Header.Started.Format("2006-01-02 15:04"))}
	files := run.Files

	// Verdicts, with no answer as one more.
	byVerdict := map[psengine.Verdict][]runrecord.File{}
	for _, f := range files {
		byVerdict[f.Verdict] = append(byVerdict[f.Verdict], f)
	}
	var bars []bar
	for _, v := range []psengine.Verdict{psengine.Malicious, psengine.Suspicious, psengine.Benign, psengine.Unknown, ""} {
		fs := byVerdict[v]
		if len(fs) == 0 {
			continue
		}
		label := string(v)
		if v == "" {
			label = "no answer"
		}
		bars = append(bars, bar{Label: label, Count: len(fs), Color: verdictColors[v]})
		row := verdictRow{Verdict: label, Count: len(fs), Share: percent(len(fs), len(files)), MedianConfidence: "-"}
		var confs []float64
		for _, f := range fs {
			if f.Confidence > 0 {
				confs = append(confs, f.Confidence)
			}
		}
		if len(confs) > 0 {
			slices.Sort(confs)
			row.MedianConfidence = fmt.Sprintf("%.2f", confs[(len(confs)-1)/2])
		}
		p.VerdictRows = append(p.VerdictRows, row)
	}
	p.Verdicts = barChart("chart-verdicts", "verdicts", bars, len(files))

	// Confidence, in tenths.
	conf := make([]int, 10)
	answered := 0
	for _, f := range files {
		switch {
		case !f.Answered():
		case f.Confidence > 0:
			answered++
			conf[min(int(f.Confidence*10), 9)]++
		default:
			answered++
			p.NoConfidence++
		}
	}
	if answered > p.NoConfidence {
		labels := make([]string, 11)
		for i := range labels {
			labels[i] = fmt.Sprintf("%.1f", float64(i)/10)
		}
		p.Confidence = histogram("chart-confidence", "confidence", conf, labels, colorConfidence)
	}

	// Times: every file that reached an engine.
	var timed []runrecord.File
	for _, f := range files {
		if f.Seconds > 0 {
			timed = append(timed, f)
		}
	}
	slices.SortStableFunc(timed, func(a, b runrecord.File) int { return cmp.Compare(b.Seconds, a.Seconds) })
	p.Timed = len(timed)
	if len(timed) > 0 {
		secs := make([]float64, len(timed))
		for i, f := range timed {
			secs[i] = f.Seconds
		}
		edges, counts := timeBins(secs)
		labels := make([]string, len(edges))
		for i, e := range edges {
			labels[i] = formatSeconds(e)
		}
		p.Times = histogram("chart-times", "scan times", counts, labels, colorTime)
		p.Slowest = timed[:min(slowestShown, len(timed))]
	}

	// Errors by kind, most first, with the first few of each.
	kinds := map[string]*errorKind{}
	for _, f := range files {
		if f.Error == "" {
			continue
		}
		k := kinds[f.Error]
		if k == nil {
			k = &errorKind{Kind: f.Error}
			kinds[f.Error] = k
		}
		k.Count++
		if len(k.Examples) < examplesShown {
			k.Examples = append(k.Examples, f)
		}
	}
	errorCount := 0
	bars = nil
	for _, k := range slices.SortedFunc(maps.Values(kinds), func(a, b *errorKind) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Kind, b.Kind))
	}) {
		p.ErrorKinds = append(p.ErrorKinds, *k)
		bars = append(bars, bar{Label: k.Kind, Count: k.Count, Color: colorErrors})
		errorCount += k.Count
	}
	p.Errors = barChart("chart-errors", "errors by kind", bars, len(files))

	// Families, most first.
	families := map[string]int{}
	for _, f := range files {
		if f.Family != "" {
			families[f.Family]++
		}
	}
	bars = nil
	for _, name := range slices.SortedFunc(maps.Keys(families), func(a, b string) int {
		return cmp.Or(cmp.Compare(families[b], families[a]), cmp.Compare(a, b))
	}) {
		bars = append(bars, bar{Label: name, Count: families[name], Color: colorFamilies})
	}
	charted := bars[:min(familiesCharted, len(bars))]
	p.MoreFamilies = bars[len(charted):]
	p.Families = barChart("chart-families", "malware families", charted, len(files))

	p.Cards = cards(run, len(byVerdict[psengine.Malicious]), answered, errorCount, len(families), timed)
	return pages.ExecuteTemplate(w, "report", p)
}

// cards are the run's figures at a glance.
func cards(run *runrecord.Run, detections, answered, errors, families int, timed []runrecord.File) []card {
	n := len(run.Files)
	c := []card{
		{fmt.Sprint(n), "artifacts"},
		{fmt.Sprintf("%d (%s)", detections, percent(detections, answered)), "detections (of answers)"},
		{fmt.Sprint(n - answered), "without an answer"},
		{fmt.Sprint(errors), "errors"},
		{fmt.Sprint(families), "families"},
	}
	if s := run.Summary; s != nil && s.Seconds > 0 {
		c = append(c, card{fmt.Sprintf("%s (%.1f/s)", formatSeconds(s.Seconds), float64(s.Artifacts)/s.Seconds), "elapsed"})
	}
	if len(timed) > 0 { // slowest first
		median := timed[len(timed)/2].Seconds
		p95 := timed[int(math.Floor(float64(len(timed))*0.05))].Seconds
		c = append(c, card{formatSeconds(median), "median time"}, card{formatSeconds(p95), "p95 time"})
	}
	return c
}

// timeBins counts secs (all > 0) in bins whose edges run 1, 2, 5, 10,
// 20... (a log scale people read), from the edge at or below the least to
// the one above the most.
func timeBins(secs []float64) (edges []float64, counts []int) {
	lo, hi := slices.Min(secs), slices.Max(secs)
	lo = math.Max(lo, 1e-6) // a microsecond at least: a first bin for anything shorter
	hi = math.Max(hi, lo)
	e := math.Pow(10, math.Floor(math.Log10(lo)))
	for _, m := range []float64{5, 2} {
		if e*m <= lo {
			e *= m
			break
		}
	}
	for {
		edges = append(edges, e)
		if e > hi && len(edges) > 1 { // the first may be above (by a rounding of Pow)
			break
		}
		e = next125(e)
	}
	counts = make([]int, len(edges)-1)
	for _, s := range secs {
		i := sort.SearchFloat64s(edges, s) // edges[i] >= s
		if i == len(edges) || edges[i] > s {
			i--
		}
		counts[max(i, 0)]++
	}
	return edges, counts
}

// next125 is the 1-2-5 step after e.
func next125(e float64) float64 {
	mant := e / math.Pow(10, math.Floor(math.Log10(e)+1e-9))
	switch {
	case mant < 1.5:
		return e * 2
	case mant < 3:
		return e * 2.5
	default:
		return e * 2
	}
}

// formatSeconds writes a duration for people: 850µs, 12.5ms, 3.20s, 2m05s.
func formatSeconds(s float64) string {
	switch {
	case s < 1e-3:
		return fmt.Sprintf("%.0fµs", s*1e6)
	case s < 1:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", s*1e3), "0"), ".") + "ms"
	case s < 60:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", s), "0"), ".") + "s"
	case s >= 1e6: // a record's own figure, past what a duration holds well
		return fmt.Sprintf("%.3gs", s)
	default:
		d := time.Duration(s * float64(time.Second)).Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
}
