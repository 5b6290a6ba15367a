package winex_test

import (
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/polyswarm/psengine/winex"
)

const clamOutput = `ClamAV 1.4.6/27000/Tue Nov 26 09:00:00 2024
/tmp/a.exe: Win.Test.EICAR_HDB-1 FOUND
/tmp/b.txt: OK
/tmp/c.doc: Doc.Macro.Agent-1.UNOFFICIAL FOUND
`

func TestFields(t *testing.T) {
	version := regexp.MustCompile(`^ClamAV (?P<engine>[\d.]+)/(?P<sigs>\d+)(?:/(?P<date>.+))?`)
	tests := []struct {
		name string
		re   *regexp.Regexp
		in   string
		want map[string]string
	}{
		{"version", version, clamOutput, map[string]string{"engine": "1.4.6", "sigs": "27000", "date": "Tue Nov 26 09:00:00 2024"}},
		{"optional group absent", version, "ClamAV 1.4.6/42\n", map[string]string{"engine": "1.4.6", "sigs": "42"}},
		{"empty capture present", regexp.MustCompile(`v(?P<minor>\d*)`), "v", map[string]string{"minor": ""}},
		{"no match", version, "nothing here", nil},
		{"shared name in alternation", regexp.MustCompile(`(?m)^(?:(?P<name>\S+) FOUND|Infected: (?P<name>\S+))$`),
			"Infected: Trojan.X\n", map[string]string{"name": "Trojan.X"}},
		{"unnamed groups ignored", regexp.MustCompile(`(\w+)=(?P<v>\w+)`), "k=v1", map[string]string{"v": "v1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, winex.Fields(tt.re, tt.in)); diff != "" {
				t.Errorf("Fields (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAllFieldsAndValues(t *testing.T) {
	found := regexp.MustCompile(`(?m)^(?P<path>.+): (?P<name>\S+) FOUND$`)
	want := []map[string]string{
		{"path": "/tmp/a.exe", "name": "Win.Test.EICAR_HDB-1"},
		{"path": "/tmp/c.doc", "name": "Doc.Macro.Agent-1.UNOFFICIAL"},
	}
	if diff := cmp.Diff(want, winex.AllFields(found, clamOutput)); diff != "" {
		t.Errorf("AllFields (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"Win.Test.EICAR_HDB-1", "Doc.Macro.Agent-1.UNOFFICIAL"}, winex.Values(found, clamOutput, "name")); diff != "" {
		t.Errorf("Values (-want +got):\n%s", diff)
	}
	if got := winex.AllFields(found, "clean\n"); got != nil {
		t.Errorf("AllFields without a match = %v, want nil", got)
	}
	if got := winex.Values(found, clamOutput, "absent"); got != nil {
		t.Errorf("Values of an unknown group = %v, want nil", got)
	}
}
