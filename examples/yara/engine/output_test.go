package engine_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/polyswarm/psengine/examples/yara/engine"
)

// yaraEscape escapes a meta string as yara 4.2's command line prints it.
func yaraEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '"':
			b.WriteString(`\"`)
		case c == '\\':
			b.WriteString(`\\`)
		case c >= 32 && c <= 126:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, `\%03o`, c)
		}
	}
	return b.String()
}

// Records exactly as yara 4.2.3 (Debian 12) printed them (see the
// integration tests, which check the real program).
func TestParseMatch(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want engine.Match
	}{
		{`NoTags [] []`, engine.Match{Rule: "NoTags", Tags: []string{}, Meta: map[string]any{}}},
		{`Eicar_Test [test,av] [author="me \"quoted\" , ] x",score =5,live=true,desc="line"]`, engine.Match{
			Rule: "Eicar_Test", Tags: []string{"test", "av"},
			Meta: map[string]any{"author": `me "quoted" , ] x`, "score": int64(5), "live": true, "desc": "line"},
		}},
		{`M [] [a="back\\slash",b="nl\nx\ttab",c =-7,d=false,e="h\001\377\303\251",f=""]`, engine.Match{
			Rule: "M", Tags: []string{},
			Meta: map[string]any{"a": `back\slash`, "b": "nl\nx\ttab", "c": int64(-7), "d": false, "e": "h\x01\uFFFDé", "f": ""},
		}},
		{`Dup [] [k="first",k="second"]`, engine.Match{Rule: "Dup", Tags: []string{}, Meta: map[string]any{"k": "first"}}},
		{`Hex [] [h="\x41\r"]`, engine.Match{Rule: "Hex", Tags: []string{}, Meta: map[string]any{"h": "A\r"}}},
	} {
		got, err := engine.ParseMatch(tc.in)
		if err != nil {
			t.Errorf("ParseMatch(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseMatch(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestParseMatchRejects(t *testing.T) {
	for _, in := range []string{
		"", "Rule", "Rule []", "Rule [] [", "Rule [a,] []", "Rule [a b] []", "Rule [] [k]", `Rule [] [k="x]`,
		`Rule [] [k="x"`, `Rule [] [k="\q"]`, `Rule [] [k="\9"]`, "Rule [] [k =]", "Rule [] [k =1x]",
		"Rule [] [k=maybe]", "Rule [] [] extra", "-Rule [] []", `Rule [] [k="a"k="b"]`,
		"Rule [] [k =99999999999999999999]", `Rule [] [k="\x4"]`,
	} {
		if m, err := engine.ParseMatch(in); !errors.Is(err, engine.ErrOutput) {
			t.Errorf("ParseMatch(%q) = %+v, %v; want ErrOutput", in, m, err)
		}
	}
}

func TestParseOutput(t *testing.T) {
	// The path separates the records, even with spaces and a newline in it;
	// a meta string holding the path (yara escapes the newline) does not
	// end a record.
	path := "/tmp/dir with space/a\nb.bin"
	out := "R1 [t] [] " + path + "\n" + `R2 [] [s="x\n` + "/tmp/dir with space/a" + `\nb.bin y"] ` + path + "\n"
	got, err := engine.ParseOutput([]byte(out), path)
	if err != nil {
		t.Fatal(err)
	}
	want := []engine.Match{
		{Rule: "R1", Tags: []string{"t"}, Meta: map[string]any{}},
		{Rule: "R2", Tags: []string{}, Meta: map[string]any{"s": "x\n" + path + " y"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseOutput (-want +got):\n%s", diff)
	}

	if got, err := engine.ParseOutput(nil, path); err != nil || got != nil {
		t.Errorf("no output: %v, %v; want no match", got, err)
	}
	for _, bad := range []string{"R1 [] [] /other\n", "R1 [] [] " + path, "garbage\n", "R1 [] []\n"} {
		if _, err := engine.ParseOutput([]byte(bad), path); !errors.Is(err, engine.ErrOutput) {
			t.Errorf("ParseOutput(%q): %v, want ErrOutput", bad, err)
		}
	}
}

// format prints a match as yara -g -m does.
func format(m engine.Match, metaOrder []string) string {
	var meta []string
	for _, k := range metaOrder {
		switch v := m.Meta[k].(type) {
		case string:
			meta = append(meta, fmt.Sprintf(`%s="%s"`, k, yaraEscape(v)))
		case int64:
			meta = append(meta, fmt.Sprintf("%s =%d", k, v))
		case bool:
			meta = append(meta, fmt.Sprintf("%s=%v", k, v))
		}
	}
	return fmt.Sprintf("%s [%s] [%s]", m.Rule, strings.Join(m.Tags, ","), strings.Join(meta, ","))
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// What yara prints for any rule name, tag and meta values parses back to
// them; and arbitrary output never panics and fails with ErrOutput.
func FuzzParseOutput(f *testing.F) {
	f.Add("Rule_1", "tag", "value \"x\" \\ \n é \x00", int64(-5), true, []byte(`R [a,b] [k="v",n =1,b=true] /p`+"\n"))
	f.Add("R", "", "", int64(0), false, []byte("garbage"))
	f.Fuzz(func(t *testing.T, rule, tag, str string, n int64, flag bool, raw []byte) {
		if _, err := engine.ParseOutput(raw, "/p"); err != nil && !errors.Is(err, engine.ErrOutput) {
			t.Fatalf("error %v does not wrap ErrOutput", err)
		}
		if !isIdent(rule) {
			return
		}
		m := engine.Match{Rule: rule, Tags: []string{}, Meta: map[string]any{"s": str, "n": n, "f": flag}}
		if isIdent(tag) {
			m.Tags = []string{tag, tag + "2"}
		}
		const path = "/tmp/x y\nz"
		out := format(m, []string{"s", "n", "f"}) + " " + path + "\n"
		got, err := engine.ParseOutput([]byte(out+out), path)
		if err != nil {
			t.Fatalf("ParseOutput(%q): %v", out, err)
		}
		if !utf8.ValidString(str) {
			m.Meta["s"] = strings.ToValidUTF8(str, "\uFFFD")
		}
		if diff := cmp.Diff([]engine.Match{m, m}, got); diff != "" {
			t.Fatalf("round trip of %q (-want +got):\n%s", out, diff)
		}
		if !slices.Equal(got[0].Tags, m.Tags) {
			t.Fatal("tags differ")
		}
	})
}
