package runreport

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// chart is an SVG chart laid out in Go: the template writes its shapes as
// they are.
type chart struct {
	ID            string // the svg element's id
	Label         string // its aria-label
	Width, Height int
	Rects         []rect
	Texts         []text
	Lines         []line
}

type rect struct {
	X, Y, W, H float64
	Fill       string
	Title      string // the tooltip
}

type text struct {
	X, Y   float64
	Anchor string // start, middle or end
	Class  string
	Text   string
	Title  string // the full text, when Text is cut short
}

type line struct{ X1, Y1, X2, Y2 float64 }

// bar is one row of a horizontal bar chart.
type bar struct {
	Label string
	Count int
	Color string
}

// Chart sizes: every chart is chartWidth wide; a bar chart's rows are
// barRow high.
const (
	chartWidth = 560
	barRow     = 24
	labelWidth = 170 // a bar chart's label column
	valueWidth = 110 // room for the count and share after the longest bar
)

// barChart draws bars, one a row, each with its label before and its count
// and share of total after.
func barChart(id, label string, bars []bar, total int) chart {
	c := chart{ID: id, Label: label, Width: chartWidth, Height: len(bars)*barRow + 8}
	most := 0
	for _, b := range bars {
		most = max(most, b.Count)
	}
	span := float64(chartWidth - labelWidth - valueWidth)
	for i, b := range bars {
		y := float64(4 + i*barRow)
		w := 0.0
		if most > 0 {
			w = math.Max(span*float64(b.Count)/float64(most), 2)
		}
		name, full := cut(b.Label, 26)
		c.Texts = append(c.Texts, text{X: labelWidth - 8, Y: y + 15, Anchor: "end", Class: "label", Text: name, Title: full})
		c.Rects = append(c.Rects, rect{X: labelWidth, Y: y + 3, W: w, H: barRow - 6, Fill: b.Color,
			Title: fmt.Sprintf("%s: %d", b.Label, b.Count)})
		c.Texts = append(c.Texts, text{X: labelWidth + w + 6, Y: y + 15, Anchor: "start", Class: "value",
			Text: fmt.Sprintf("%d (%s)", b.Count, percent(b.Count, total))})
	}
	return c
}

// histogram draws counts[i] as the bar between edges[i] and edges[i+1],
// its count above it, and the edges' labels (every step-th) below.
func histogram(id, label string, counts []int, edgeLabels []string, color string) chart {
	const height, top, bottom, left, right = 230, 22, 190, 16, chartWidth - 16
	c := chart{ID: id, Label: label, Width: chartWidth, Height: height}
	most := slices.Max(append([]int{1}, counts...))
	w := float64(right-left) / float64(len(counts))
	step := 1
	for len(edgeLabels)/step > 12 {
		step++
	}
	for i, n := range counts {
		x := left + float64(i)*w
		if n > 0 {
			h := math.Max(float64(bottom-top)*float64(n)/float64(most), 2)
			c.Rects = append(c.Rects, rect{X: x + 1, Y: bottom - h, W: w - 2, H: h, Fill: color,
				Title: fmt.Sprintf("%s to %s: %d", edgeLabels[i], edgeLabels[i+1], n)})
			c.Texts = append(c.Texts, text{X: x + w/2, Y: bottom - h - 5, Anchor: "middle", Class: "value", Text: strconv.Itoa(n)})
		}
	}
	for i, l := range edgeLabels {
		x := left + float64(i)*w
		c.Lines = append(c.Lines, line{x, bottom, x, bottom + 4})
		if i%step == 0 {
			c.Texts = append(c.Texts, text{X: x, Y: bottom + 18, Anchor: "middle", Class: "tick", Text: l})
		}
	}
	c.Lines = append(c.Lines, line{left, bottom, right, bottom})
	return c
}

// cut shortens s to n runes, with an ellipsis; full is s when it was cut.
func cut(s string, n int) (short, full string) {
	if utf8.RuneCountInString(s) <= n {
		return s, ""
	}
	r := []rune(s)
	return string(r[:n-1]) + "…", s
}

// cutLeft keeps the end of s (a path's file name matters most).
func cutLeft(s string, n int) (short, full string) {
	if utf8.RuneCountInString(s) <= n {
		return s, ""
	}
	r := []rune(s)
	return "…" + string(r[len(r)-n+1:]), s
}

func percent(n, total int) string {
	if total == 0 {
		return "0%"
	}
	p := 100 * float64(n) / float64(total)
	if p > 0 && p < 0.1 {
		return "<0.1%"
	}
	return strconv.FormatFloat(p, 'f', 1, 64) + "%"
}
