package runreport

import (
	"fmt"
	"io"
	"time"

	"github.com/polyswarm/psengine/cli/runrecord"
)

// Titles and colors of the kinds of change.
var changeStyles = map[runrecord.Change]struct{ title, color string }{
	runrecord.LostDetection:  {"Lost detections", "#c0392b"},
	runrecord.NewDetection:   {"New detections", "#2e86de"},
	runrecord.VerdictChanged: {"Other verdict changes", "#e67e22"},
	runrecord.FamilyChanged:  {"Family changes", "#16a085"},
	runrecord.ConfidenceMove: {"Confidence changes", "#8e44ad"},
}

// ChangeTitle is how a page (or a listing) titles a kind of change.
func ChangeTitle(c runrecord.Change) string { return changeStyles[c].title }

type diffPage struct {
	Title, OldName, NewName string
	Old, New                *runrecord.Run
	Diff                    runrecord.Diff
	Generated               string
	Cards                   []card
	Chart                   chart
	Groups                  []changeGroup
}

type changeGroup struct {
	Change  runrecord.Change
	Title   string
	Changes []runrecord.FileChange
}

// WriteDiff writes the page of d, the changes from the run old (a record
// named oldName) to the run new (newName), to w.
func WriteDiff(w io.Writer, d runrecord.Diff, old, new *runrecord.Run, oldName, newName string) error {
	p := diffPage{Title: fmt.Sprintf("Changes from %s to %s", oldName, newName), OldName: oldName, NewName: newName,
		Old: old, New: new, Diff: d, Generated: time.Now().UTC().Format(time.RFC3339)}
	p.Cards = []card{{fmt.Sprint(d.Compared), "artifacts compared"}}
	if d.Moved > 0 {
		p.Cards = append(p.Cards, card{fmt.Sprint(d.Moved), "of which moved"})
	}
	var bars []bar
	byChange := map[runrecord.Change][]runrecord.FileChange{}
	for _, c := range d.Changes {
		byChange[c.Change] = append(byChange[c.Change], c)
	}
	for _, c := range runrecord.Changes {
		n, style := len(byChange[c]), changeStyles[c]
		p.Cards = append(p.Cards, card{fmt.Sprint(n), style.title})
		bars = append(bars, bar{Label: style.title, Count: n, Color: style.color})
		if n > 0 {
			p.Groups = append(p.Groups, changeGroup{Change: c, Title: style.title, Changes: byChange[c]})
		}
	}
	p.Cards = append(p.Cards, card{fmt.Sprintf("%d / %d", len(d.OnlyOld), len(d.OnlyNew)), "in the old / new run alone"})
	p.Chart = barChart("chart-changes", "changes", bars, d.Compared)
	return pages.ExecuteTemplate(w, "diff", p)
}
