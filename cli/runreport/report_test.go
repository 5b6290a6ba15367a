package runreport_test

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/cli/runrecord"
	"github.com/polyswarm/psengine/cli/runreport"
)

func report(t *testing.T, run *runrecord.Run) string {
	t.Helper()
	var buf bytes.Buffer
	if err := runreport.WriteReport(&buf, run, "run.json"); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// selfContained fails the test for anything that would make a browser
// fetch: a script, a stylesheet or image link, a CSS url() or @import, an
// absolute URL anywhere.
func selfContained(t *testing.T, page string) {
	t.Helper()
	for _, bad := range []string{"<script", "<link", "<img", "<iframe", "<object", "src=", "href=", "url(", "@import", "http:", "https:", "//"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page holds %q: not self-contained", bad)
		}
	}
}

func TestReport(t *testing.T) {
	run, err := runrecord.Read(bytes.NewReader(syntheticRecord(t, 2000)))
	if err != nil {
		t.Fatal(err)
	}
	page := report(t, run)
	selfContained(t, page)
	for _, want := range []string{
		`<svg id="chart-verdicts"`, `<svg id="chart-confidence"`, `<svg id="chart-times"`, `<svg id="chart-errors"`, `<svg id="chart-families"`,
		"<h2>Verdicts</h2>", "<h2>Errors by kind</h2>", "The 15 slowest of ",
		"signatures <code>2026-05-01</code>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	// The verdict chart's numbers are the run's.
	counts := map[string]int{}
	for _, f := range run.Files {
		counts[string(f.Verdict)]++
	}
	for v, n := range counts {
		if v == "" {
			v = "no answer"
		}
		row := regexp.MustCompile(`<td>` + v + `</td><td class="n">(\d+)</td>`).FindStringSubmatch(page)
		if row == nil || row[1] != strconv.Itoa(n) {
			t.Errorf("verdict %s: row %q, want %d", v, row, n)
		}
	}
	// The slowest file is listed first.
	slowest := run.Files[0]
	for _, f := range run.Files {
		if f.Seconds > slowest.Seconds {
			slowest = f
		}
	}
	if i := strings.Index(page, "The 15 slowest"); i < 0 || !strings.Contains(page[i:i+800], slowest.Path) {
		t.Errorf("the slowest file %s is not first", slowest.Path)
	}
}

// A user's file names and messages are text, never markup.
func TestReportEscapes(t *testing.T) {
	hostile := `<script>alert(1)</script><img src=x onerror=alert(2)>`
	run := &runrecord.Run{
		Header: runrecord.Header{Engine: hostile, Started: time.Now(), Inputs: []string{hostile}},
		Files: []runrecord.File{
			{Path: hostile, Verdict: psengine.Malicious, Confidence: 0.9, Family: hostile, Seconds: 1, Error: hostile, Message: hostile},
		},
		Scanners: []runrecord.Scanner{{Product: hostile, SignaturesVersion: hostile}},
	}
	page := report(t, run)
	if strings.Contains(page, "<script>") || strings.Contains(page, "<img") || !strings.Contains(page, "&lt;script&gt;") {
		t.Error("a file's name made markup")
	}
}

// A partial run says so; an empty one renders without charts.
func TestReportPartialAndEmpty(t *testing.T) {
	data := syntheticRecord(t, 50)
	cut := data[:bytes.LastIndex(data, []byte(`{"type":"summary"`))-30]
	run, err := runrecord.Read(bytes.NewReader(cut))
	if err != nil {
		t.Fatal(err)
	}
	if page := report(t, run); !strings.Contains(page, "Partial run") || !strings.Contains(page, "last line was cut short") {
		t.Error("a partial run is not said to be")
	}
	page := report(t, &runrecord.Run{Header: runrecord.Header{Engine: "e"}, Summary: &runrecord.Summary{}})
	if strings.Contains(page, "<svg") || !strings.Contains(page, "No artifact recorded.") || strings.Contains(page, "Partial run") {
		t.Errorf("empty run:\n%s", page)
	}
}

func TestDiffPage(t *testing.T) {
	old := &runrecord.Run{Files: []runrecord.File{
		{Path: "a", Verdict: psengine.Malicious, Family: "A", Confidence: 0.9},
		{Path: "b", Verdict: psengine.Benign},
		{Path: "c", Verdict: psengine.Benign},
	}, Summary: &runrecord.Summary{}}
	cur := &runrecord.Run{Files: []runrecord.File{
		{Path: "a", Verdict: psengine.Benign},
		{Path: "b", Verdict: psengine.Malicious, Family: "<B>"},
	}}
	d := runrecord.Compare(old, cur, 0.2)
	var buf bytes.Buffer
	if err := runreport.WriteDiff(&buf, d, old, cur, "old.json", "new.json"); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	selfContained(t, page)
	for _, want := range []string{`<svg id="chart-changes"`, "<h2>Lost detections (1)</h2>", "<h2>New detections (1)</h2>",
		"malicious</span> &lt;B&gt;", "1 in the old run alone", "The new run is partial"} {
		if !strings.Contains(page, want) {
			t.Errorf("the diff page lacks %q", want)
		}
	}
	if strings.Contains(page, "Family changes (") {
		t.Error("an empty kind of change has a section")
	}
}
