package runrecord

import (
	"cmp"
	"maps"
	"math"
	"slices"
)

// Change is how a file's answer changed from one run to the next, in the
// order Compare lists them (worst first).
type Change string

const (
	LostDetection  Change = "lost-detection" // malicious before, not now (another verdict, or no answer)
	NewDetection   Change = "new-detection"  // malicious now, not before
	VerdictChanged Change = "verdict"        // another verdict change (benign to unknown, no answer to benign...)
	FamilyChanged  Change = "family"         // same verdict, another malware family
	ConfidenceMove Change = "confidence"     // same verdict and family, confidence moved by the threshold or more
)

// Changes lists the kinds of change, in their order.
var Changes = []Change{LostDetection, NewDetection, VerdictChanged, FamilyChanged, ConfidenceMove}

// FileChange is one file whose answer changed.
type FileChange struct {
	Change Change `json:"change"`
	Path   string `json:"path"` // in the new run
	// OldPath is the file's path in the old run when it moved: it was
	// matched by its content (sha256), not by its path.
	OldPath string `json:"old_path,omitempty"`
	Old     File   `json:"old"`
	New     File   `json:"new"`
}

// Diff is what changed from one run to another.
type Diff struct {
	ConfidenceDelta float64      `json:"confidence_delta"`
	Compared        int          `json:"compared"`    // files in both runs
	Moved           int          `json:"moved"`       // of which matched by content
	Changes         []FileChange `json:"changes"`     // by Change (as Changes lists them), then path
	OnlyOld         []string     `json:"only_in_old"` // paths of the files in the old run alone
	OnlyNew         []string     `json:"only_in_new"` // and in the new run alone
}

// Count is the number of changes of kind c.
func (d Diff) Count(c Change) int {
	n := 0
	for _, fc := range d.Changes {
		if fc.Change == c {
			n++
		}
	}
	return n
}

// Compare matches the files of two runs and lists those whose answer
// changed. Files are matched by path first; then a file of the new run
// left alone is matched with one of the old run left alone that has the
// same sha256 (a file moved or renamed, or a run from another directory),
// in path order. A path given twice in a run counts once, at its first
// result. Files in one run alone are listed, not compared: a partial run
// lacks some.
//
// A confidence change is listed when it is at least confidenceDelta (up to
// 1e-9, the error of a difference of floats), and the verdict and family
// stayed the same.
func Compare(before, after *Run, confidenceDelta float64) Diff {
	d := Diff{ConfidenceDelta: confidenceDelta, Changes: []FileChange{}, OnlyOld: []string{}, OnlyNew: []string{}}
	oldByPath := map[string]File{}
	for _, f := range before.Files {
		if _, dup := oldByPath[f.Path]; !dup {
			oldByPath[f.Path] = f
		}
	}
	seen := map[string]bool{}
	var unmatched []File // in the new run
	compare := func(o, n File, oldPath string) {
		d.Compared++
		if c, changed := classify(o, n, confidenceDelta); changed {
			d.Changes = append(d.Changes, FileChange{Change: c, Path: n.Path, OldPath: oldPath, Old: o, New: n})
		}
	}
	for _, n := range after.Files {
		if seen[n.Path] {
			continue
		}
		seen[n.Path] = true
		o, ok := oldByPath[n.Path]
		if !ok {
			unmatched = append(unmatched, n)
			continue
		}
		delete(oldByPath, n.Path)
		compare(o, n, "")
	}
	// The old files left, by content, in path order.
	bySHA := map[string][]File{}
	for _, p := range slices.Sorted(maps.Keys(oldByPath)) {
		if o := oldByPath[p]; o.SHA256 != "" {
			bySHA[o.SHA256] = append(bySHA[o.SHA256], o)
		}
	}
	slices.SortFunc(unmatched, func(a, b File) int { return cmp.Compare(a.Path, b.Path) })
	for _, n := range unmatched {
		if olds := bySHA[n.SHA256]; n.SHA256 != "" && len(olds) > 0 {
			o := olds[0]
			bySHA[n.SHA256] = olds[1:]
			delete(oldByPath, o.Path)
			d.Moved++
			compare(o, n, o.Path)
			continue
		}
		d.OnlyNew = append(d.OnlyNew, n.Path)
	}
	d.OnlyOld = slices.AppendSeq(d.OnlyOld, maps.Keys(oldByPath))
	slices.Sort(d.OnlyOld)
	slices.SortStableFunc(d.Changes, func(a, b FileChange) int {
		return cmp.Or(cmp.Compare(slices.Index(Changes, a.Change), slices.Index(Changes, b.Change)), cmp.Compare(a.Path, b.Path))
	})
	return d
}

// classify says how the answer changed from o to n, if it did.
func classify(o, n File, confidenceDelta float64) (Change, bool) {
	switch {
	case o.Detected() && !n.Detected():
		return LostDetection, true
	case !o.Detected() && n.Detected():
		return NewDetection, true
	case o.Verdict != n.Verdict:
		return VerdictChanged, true
	case o.Family != n.Family:
		return FamilyChanged, true
	case o.Answered() && math.Abs(n.Confidence-o.Confidence) >= confidenceDelta-1e-9:
		return ConfidenceMove, true
	}
	return "", false
}
