package runrecord_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/cli/runrecord"
)

func file(path, sha string, v psengine.Verdict, conf float64, family string) runrecord.File {
	return runrecord.File{Path: path, SHA256: sha, Verdict: v, Confidence: conf, Family: family, Seconds: 0.1}
}

func TestCompare(t *testing.T) {
	mal, ben, unk := psengine.Malicious, psengine.Benign, psengine.Unknown
	old := &runrecord.Run{Files: []runrecord.File{
		file("same", "s1", mal, 0.9, "A"),
		file("lost", "s2", mal, 0.9, "A"),
		file("lost-to-error", "s3", mal, 0.9, "A"),
		file("new", "s4", ben, 0.1, ""),
		file("verdict", "s5", ben, 0.1, ""),
		file("family", "s6", mal, 0.9, "A"),
		file("conf-up", "s7", mal, 0.5, "A"),    // 0.7-0.5 is 0.19999999999999996
		file("conf-small", "s8", mal, 0.5, "A"), // moves by 0.1
		file("dup", "s9", mal, 0.9, "A"),
		file("dup", "s9", ben, 0.9, ""), // a second result for the path: ignored
		file("old-name", "s10", mal, 0.9, "A"),
		file("gone", "s11", mal, 0.9, "A"),
		file("both-unanswered", "", "", 0, ""),
	}}
	newRun := &runrecord.Run{Files: []runrecord.File{
		file("same", "s1", mal, 0.9, "A"),
		file("lost", "s2", ben, 0.9, ""),
		{Path: "lost-to-error", SHA256: "s3", Error: "timeout"},
		file("new", "s4", mal, 0.8, "B"),
		file("verdict", "s5", unk, 0, ""),
		file("family", "s6", mal, 0.9, "B"),
		file("conf-up", "s7", mal, 0.7, "A"),
		file("conf-small", "s8", mal, 0.6, "A"),
		file("dup", "s9", mal, 0.9, "A"),
		file("new-name", "s10", ben, 0.9, ""), // moved: matched by content
		file("arrived", "s12", mal, 0.9, "A"),
		{Path: "both-unanswered", Error: "not-found"},
	}}
	d := runrecord.Compare(old, newRun, 0.2)
	type change struct{ Change, Path, OldPath string }
	var got []change
	for _, c := range d.Changes {
		got = append(got, change{string(c.Change), c.Path, c.OldPath})
	}
	want := []change{
		{"lost-detection", "lost", ""},
		{"lost-detection", "lost-to-error", ""},
		{"lost-detection", "new-name", "old-name"},
		{"new-detection", "new", ""},
		{"verdict", "verdict", ""},
		{"family", "family", ""},
		{"confidence", "conf-up", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if d.Compared != 11 || d.Moved != 1 || d.Count(runrecord.LostDetection) != 3 {
		t.Errorf("compared %d, moved %d, lost %d", d.Compared, d.Moved, d.Count(runrecord.LostDetection))
	}
	if !cmp.Equal(d.OnlyOld, []string{"gone"}) || !cmp.Equal(d.OnlyNew, []string{"arrived"}) {
		t.Errorf("only old %q, only new %q", d.OnlyOld, d.OnlyNew)
	}
	if c := d.Changes[0]; c.Old.Verdict != mal || c.New.Verdict != ben {
		t.Errorf("the change does not carry both answers: %+v", c)
	}

	// The same run: nothing changed.
	if d := runrecord.Compare(old, old, 0.2); len(d.Changes) != 0 || len(d.OnlyOld)+len(d.OnlyNew) != 0 {
		t.Errorf("a run compared with itself: %+v", d)
	}
}
