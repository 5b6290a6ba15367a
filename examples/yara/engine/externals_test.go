package engine_test

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/polyswarm/psengine/examples/yara/engine"
)

func TestParseExternals(t *testing.T) {
	got, err := engine.ParseExternals(" a=1 ,b=-2\n\nc=0x10, d=1.5,e=2e3, f=true,g=false , h=hello world ,i=\"x, \\\"y\\\"\\n\", j=, k=\"\", l=1.2.3, m=-")
	if err != nil {
		t.Fatal(err)
	}
	want := []engine.External{
		{"a", int64(1)}, {"b", int64(-2)}, {"c", int64(16)}, {"d", 1.5}, {"e", 2000.0}, {"f", true}, {"g", false},
		{"h", "hello world"}, {"i", "x, \"y\"\n"}, {"j", ""}, {"k", ""}, {"l", "1.2.3"}, {"m", "-"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got, err := engine.ParseExternals(""); err != nil || got != nil {
		t.Errorf("empty: %v, %v", got, err)
	}
	for _, bad := range []string{"x", "=1", "1a=2", "a-b=1", "a=1,a=2", "filename=x", "owner=me", `a="open`, `a="x"y`, `a=x"y`, "a=\"\\q\"", `a="\x00"`} {
		if got, err := engine.ParseExternals(bad); !errors.Is(err, engine.ErrConfig) {
			t.Errorf("ParseExternals(%q) = %v, %v; want ErrConfig", bad, got, err)
		}
	}
}

// format writes an external as ParseExternals reads it back.
func format(x engine.External) string {
	switch v := x.Value.(type) {
	case string:
		return x.Name + "=" + strconv.Quote(v)
	case float64:
		return x.Name + "=" + strconv.FormatFloat(v, 'g', -1, 64)
	}
	return fmt.Sprintf("%s=%v", x.Name, x.Value)
}

// Any input parses or fails with ErrConfig; what format writes parses back.
func FuzzParseExternals(f *testing.F) {
	f.Add("a=1,b=\"x,y\"\nc=true", "name", "va,l\"ue", int64(-3), 0.25, true)
	f.Add("", "x", "", int64(0), 1e300, false)
	f.Fuzz(func(t *testing.T, raw, name, str string, n int64, fl float64, b bool) {
		if _, err := engine.ParseExternals(raw); err != nil && !errors.Is(err, engine.ErrConfig) {
			t.Fatalf("ParseExternals(%q): %v does not wrap ErrConfig", raw, err)
		}
		if !isIdent(name) || strings.Contains(str, "\x00") || math.IsNaN(fl) || math.IsInf(fl, 0) || strings.Contains("filename filepath extension filetype owner", name) {
			return
		}
		want := []engine.External{{name + "_s", str}, {name + "_n", n}, {name + "_f", fl}, {name + "_b", b}}
		parts := make([]string, len(want))
		for i, x := range want {
			parts[i] = format(x)
		}
		got, err := engine.ParseExternals(strings.Join(parts, ","))
		if err != nil {
			t.Fatal(err)
		}
		if v := strconv.FormatFloat(fl, 'g', -1, 64); !strings.ContainsAny(v, ".e") {
			want[2].Value = int64(fl) // written as an integer, read as one
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("round trip of %q (-want +got):\n%s", strings.Join(parts, ","), diff)
		}
	})
}

func isIdent(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
