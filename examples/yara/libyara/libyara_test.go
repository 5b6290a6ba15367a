package libyara_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/polyswarm/psengine/examples/yara/libyara"
)

// need skips a test without libyara, or fails it under CI=true.
func need(t testing.TB) {
	t.Helper()
	if !libyara.Available {
		if os.Getenv("CI") == "true" {
			t.Fatal("built without libyara (apt-get install libyara-dev; no -tags nolibyara)")
		}
		t.Skip("built without libyara (apt-get install libyara-dev)")
	}
}

func write(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// compile compiles files (or, given no file, src) with externals.
func compile(t testing.TB, externals map[string]any, src string, files ...string) *libyara.Rules {
	t.Helper()
	c, err := libyara.NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for k, v := range externals {
		if err := c.Define(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if len(files) == 0 {
		if err := c.AddString(src, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		if err := c.AddFile(f, ""); err != nil {
			t.Fatal(err)
		}
	}
	r, err := c.Rules()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

func scanner(t testing.TB, r *libyara.Rules) *libyara.Scanner {
	t.Helper()
	s, err := r.NewScanner()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func names(rules []*libyara.Rule) []string {
	out := []string{}
	for _, r := range rules {
		out = append(out, r.Identifier)
	}
	return out
}

func TestVersion(t *testing.T) {
	need(t)
	if v := libyara.Version(); !strings.HasPrefix(v, "4.") {
		t.Errorf("Version() = %q, want 4.x", v)
	}
}

const metaRules = `
rule Quoted : tag_one TagTwo
{
  meta:
    description = "the attacker's \"tool\"\tand\\more"
    score = 80
    negative = -3
    live = true
    dead = false
    raw = "\x41\xff"
    description = "repeated key"
  strings:
    $a = "MARKER-ONE"
  condition:
    $a
}

private rule Hidden { condition: true }

rule Plain { strings: $b = { 4D 41 52 4B } condition: $b and Hidden }
`

// Tags and every kind of meta come back exactly; private rules are never
// reported; a rule matching a private one is.
func TestMatchDetails(t *testing.T) {
	need(t)
	r := compile(t, nil, metaRules)
	s := scanner(t, r)
	got, err := s.ScanMem([]byte("xx MARKER-ONE xx"))
	if err != nil {
		t.Fatal(err)
	}
	want := []*libyara.Rule{
		{Index: 0, Identifier: "Quoted", Namespace: "default", Tags: []string{"tag_one", "TagTwo"}, Metas: []libyara.Meta{
			{"description", `the attacker's "tool"` + "\tand\\more"}, {"score", int64(80)}, {"negative", int64(-3)},
			{"live", true}, {"dead", false}, {"raw", "A\xff"}, {"description", "repeated key"},
		}},
		{Index: 2, Identifier: "Plain", Namespace: "default", Tags: []string{}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("matches (-want +got):\n%s", diff)
	}
	if got, err := s.ScanMem([]byte("nothing")); err != nil || len(got) != 0 {
		t.Errorf("no match: %v, %v", names(got), err)
	}
	if got, err := s.ScanMem(nil); err != nil || len(got) != 0 {
		t.Errorf("empty input: %v, %v", names(got), err)
	}
	if r.Len() != 3 || !r.Rules()[1].Private {
		t.Errorf("rules table: %+v", r.Rules())
	}
}

const externalRules = `
rule Ext_Int { condition: level > 3 }
rule Ext_Float { condition: ratio > 0.5 }
rule Ext_Bool { condition: enabled }
rule Ext_String { condition: filename matches /\.exe$/ and owner == "alice" }
`

// Externals: defaults from the compiler, then per scanner and per scan.
func TestExternals(t *testing.T) {
	need(t)
	r := compile(t, map[string]any{"level": 1, "ratio": 0.25, "enabled": false, "filename": "", "owner": ""}, externalRules)
	s1, s2 := scanner(t, r), scanner(t, r)
	scan := func(s *libyara.Scanner) []string {
		got, err := s.ScanMem([]byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		return names(got)
	}
	if got := scan(s1); len(got) != 0 {
		t.Fatalf("defaults: %v", got)
	}
	for k, v := range map[string]any{"level": int64(5), "ratio": 0.75, "enabled": true, "filename": "a.exe", "owner": "alice"} {
		if err := s1.Define(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]string{"Ext_Int", "Ext_Float", "Ext_Bool", "Ext_String"}, scan(s1)); diff != "" {
		t.Errorf("after Define (-want +got):\n%s", diff)
	}
	if got := scan(s2); len(got) != 0 {
		t.Errorf("another scanner sees the first one's values: %v", got)
	}
	if err := s1.Define("filename", "a.txt"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"Ext_Int", "Ext_Float", "Ext_Bool"}, scan(s1)); diff != "" {
		t.Errorf("after a second Define (-want +got):\n%s", diff)
	}
	if err := s1.Define("undeclared", "x"); err == nil {
		t.Error("Define of an external the compiler did not define: no error")
	}
	if err := s1.Define("x", []int{1}); err == nil {
		t.Error("Define of a slice: no error")
	}
	if err := s1.Define("owner", "a\x00b"); err == nil {
		t.Error("Define of a string with a NUL byte: no error")
	}

	// Rules using an undefined external do not compile.
	c, err := libyara.NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.AddString(externalRules, "")
	var ce *libyara.CompileError
	if !errors.As(err, &ce) || !errors.Is(err, libyara.ErrCompile) || !strings.Contains(err.Error(), "undefined identifier") {
		t.Errorf("undefined external: %v", err)
	}
}

// Includes resolve against the including file's directory, nested ones
// too; every file read is listed with its digest; errors in an included
// file name it and the line.
func TestIncludes(t *testing.T) {
	need(t)
	dir := t.TempDir()
	top := write(t, dir, "top.yar", `include "sub/common.yar"
rule Top { strings: $t = "TOP" condition: $t and Common }
`)
	common := write(t, dir, "sub/common.yar", `include "../shared/leaf.yar"
rule Common { strings: $c = "COMMON" condition: $c or Leaf }
`)
	leaf := write(t, dir, "shared/leaf.yar", `rule Leaf { strings: $l = "LEAF" condition: $l }`)

	c, err := libyara.NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Chdir(t.TempDir()) // includes never resolve against the working directory
	if err := c.AddFile(top, ""); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range c.Files() {
		paths = append(paths, f.Path)
		data, _ := os.ReadFile(f.Path)
		if f.SHA256 != sha256.Sum256(data) || f.Size != len(data) {
			t.Errorf("%s: digest or size wrong", f.Path)
		}
	}
	if diff := cmp.Diff([]string{top, common, leaf}, paths); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	r, err := c.Rules()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, err := r.NewScanner()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.ScanMem([]byte("TOP LEAF"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"Leaf", "Common", "Top"}, names(got)); diff != "" {
		t.Errorf("matches (-want +got):\n%s", diff)
	}

	// A syntax error on line 2 of the nested include.
	write(t, dir, "shared/leaf.yar", "rule Leaf {\n  strings: $l = \"LEAF\" condition: $l and\n}\n")
	err = compileErr(t, top)
	var ce *libyara.CompileError
	if !errors.As(err, &ce) || ce.Errors[0].File != leaf || ce.Errors[0].Line != 3 {
		t.Errorf("error in a nested include: %v (%+v), want %s line 3", err, ce, leaf)
	}
	// A missing include.
	write(t, dir, "shared/leaf.yar", `include "gone.yar"`)
	if err := compileErr(t, top); !errors.As(err, &ce) || ce.Errors[0].File != leaf ||
		!strings.Contains(err.Error(), filepath.Join(dir, "shared/gone.yar")) {
		t.Errorf("missing include: %v", err)
	}
	// The same include string naming two files.
	write(t, dir, "shared/leaf.yar", `include "x.yar"`)
	write(t, dir, "shared/x.yar", `rule X1 { condition: true }`)
	write(t, dir, "sub/x.yar", `rule X2 { condition: true }`)
	write(t, dir, "sub/common.yar", "include \"../shared/leaf.yar\"\ninclude \"x.yar\"\n")
	if err := compileErr(t, top); !strings.Contains(err.Error(), "distinct names") {
		t.Errorf("an ambiguous include string: %v", err)
	}
	// An include cycle.
	write(t, dir, "sub/common.yar", `include "../top.yar"`)
	if err := compileErr(t, top); err == nil {
		t.Error("an include cycle compiled")
	}
}

func compileErr(t *testing.T, file string) error {
	t.Helper()
	c, err := libyara.NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.AddFile(file, "")
	if err == nil {
		if _, err := c.Rules(); err != nil {
			t.Fatal(err)
		}
	}
	return err
}

// Errors name the file and line; warnings are kept apart.
func TestCompileErrors(t *testing.T) {
	need(t)
	dir := t.TempDir()
	bad := write(t, dir, "bad.yar", "rule Ok { condition: true }\n\nrule Broken {\n strings: $a = \"x\"\n condition: true\n}\n")
	err := compileErr(t, bad)
	var ce *libyara.CompileError
	if !errors.As(err, &ce) || ce.Errors[0].File != bad || ce.Errors[0].Line != 6 || !strings.Contains(ce.Errors[0].Text, "unreferenced string") {
		t.Errorf("unreferenced string: %v (%+v)", err, ce)
	}
	if !strings.Contains(err.Error(), bad+":6: ") {
		t.Errorf("the message does not say FILE:LINE: %v", err)
	}
	nul := write(t, dir, "nul.yar", "rule A { condition: true }\nrule B\x00 { condition: true }")
	if err := compileErr(t, nul); !errors.As(err, &ce) || ce.Errors[0].Line != 2 || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("a NUL byte: %v", err)
	}
	if err := compileErr(t, filepath.Join(dir, "missing.yar")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
	slow := write(t, dir, "slow.yar", "rule Slow { strings: $a = /a.*b/ condition: $a }\n")
	c, err := libyara.NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.AddFile(slow, ""); err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) == 0 || !w[0].Warning || w[0].File != slow {
		t.Errorf("warnings: %+v", w)
	}
	if err := c.AddString("rule Dup { condition: true } rule Dup { condition: true }", ""); err == nil {
		t.Error("a duplicated rule compiled")
	}
	if err := c.AddString("rule Later { condition: true }", ""); err == nil {
		t.Error("a compiler that failed took another source")
	}
	if _, err := c.Rules(); err == nil {
		t.Error("a compiler that failed gave rules")
	}
}

// Saved rules load and match the same, externals included; saving while
// scanners scan is safe.
func TestSaveLoad(t *testing.T) {
	need(t)
	r := compile(t, map[string]any{"level": 1, "ratio": 0.25, "enabled": false, "filename": "", "owner": ""}, metaRules+externalRules)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		s := scanner(t, r)
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := s.ScanMem([]byte("MARKER-ONE"))
				if err != nil || len(got) != 2 {
					t.Errorf("scan during Save: %v, %v", names(got), err)
					return
				}
			}
		})
	}
	var saved [][]byte
	for range 20 {
		var buf bytes.Buffer
		if err := r.Save(&buf); err != nil {
			t.Fatal(err)
		}
		saved = append(saved, buf.Bytes())
	}
	close(stop)
	wg.Wait()
	if !bytes.HasPrefix(saved[0], []byte("YARA")) || !bytes.Equal(saved[0], saved[19]) {
		t.Errorf("saved rules: %d bytes, start %q; all saves equal: %v", len(saved[0]), saved[0][:4], bytes.Equal(saved[0], saved[19]))
	}
	loaded, err := libyara.LoadRules(saved[0])
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Close()
	if diff := cmp.Diff(r.Rules(), loaded.Rules()); diff != "" {
		t.Errorf("loaded rules (-want +got):\n%s", diff)
	}
	s, err := loaded.NewScanner()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Define("level", 9); err != nil {
		t.Fatal(err)
	}
	got, err := s.ScanMem([]byte("MARKER-ONE"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"Quoted", "Plain", "Ext_Int"}, names(got)); diff != "" {
		t.Errorf("loaded rules' matches (-want +got):\n%s", diff)
	}
	if _, err := libyara.LoadRules([]byte("not rules")); err == nil {
		t.Error("LoadRules of garbage: no error")
	}
}

func TestScanFileAndFD(t *testing.T) {
	need(t)
	r := compile(t, nil, metaRules)
	s := scanner(t, r)
	dir := t.TempDir()
	hit := write(t, dir, "hit", "MARKER-ONE")
	empty := write(t, dir, "empty", "")
	for _, path := range []string{hit, empty} {
		want := 0
		if path == hit {
			want = 2
		}
		got, err := s.ScanFile(path)
		if err != nil || len(got) != want {
			t.Errorf("ScanFile(%s): %v, %v", path, names(got), err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err = s.ScanFD(f)
		f.Close()
		if err != nil || len(got) != want {
			t.Errorf("ScanFD(%s): %v, %v", path, names(got), err)
		}
	}
	_, err := s.ScanFile(filepath.Join(dir, "missing"))
	var ye *libyara.Error
	if !errors.As(err, &ye) || ye.Code != 3 || !strings.Contains(err.Error(), "could not open file") {
		t.Errorf("a missing file: %v", err)
	}
}

// Rules do not close under open scanners; closed objects fail cleanly.
func TestLifetimes(t *testing.T) {
	need(t)
	c, err := libyara.NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddString(metaRules, "ns1"); err != nil {
		t.Fatal(err)
	}
	r, err := c.Rules()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rules(); err == nil {
		t.Error("a second Rules from one compiler")
	}
	c.Close()
	c.Close()
	if err := c.AddString("rule X { condition: true }", ""); !errors.Is(err, libyara.ErrClosed) {
		t.Errorf("AddString after Close: %v", err)
	}
	s, err := r.NewScanner()
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ScanMem([]byte("MARKER-ONE"))
	if err != nil || len(got) != 2 || got[0].Namespace != "ns1" {
		t.Fatalf("scan after the compiler closed: %v, %v", got, err)
	}
	if err := r.Close(); !errors.Is(err, libyara.ErrInUse) {
		t.Errorf("Close with an open scanner: %v", err)
	}
	s.Close()
	s.Close()
	if _, err := s.ScanMem(nil); !errors.Is(err, libyara.ErrClosed) {
		t.Errorf("scan after Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.NewScanner(); !errors.Is(err, libyara.ErrClosed) {
		t.Errorf("NewScanner after Close: %v", err)
	}
	if err := r.Save(&bytes.Buffer{}); !errors.Is(err, libyara.ErrClosed) {
		t.Errorf("Save after Close: %v", err)
	}
}

// Many scanners of one rule set scan at once, each with its own externals.
func TestConcurrentScanners(t *testing.T) {
	need(t)
	r := compile(t, map[string]any{"level": 0, "ratio": 0.0, "enabled": false, "filename": "", "owner": ""}, externalRules)
	var wg sync.WaitGroup
	for w := range 4 {
		s := scanner(t, r)
		wg.Go(func() {
			for i := range 200 {
				level := int64(w*1000 + i)
				if err := s.Define("level", level); err != nil {
					t.Error(err)
					return
				}
				got, err := s.ScanMem([]byte(fmt.Sprint(i)))
				want := 0
				if level > 3 {
					want = 1
				}
				if err != nil || len(got) != want {
					t.Errorf("worker %d scan %d: %v, %v", w, i, names(got), err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// Scanning arbitrary bytes never fails, and a literal rule matches exactly
// when the bytes hold the literal.
func FuzzScanMem(f *testing.F) {
	need(f)
	c, err := libyara.NewCompiler()
	if err != nil {
		f.Fatal(err)
	}
	if err := c.AddString(`
rule Lit { strings: $a = "evil" condition: $a }
rule Hex { strings: $h = { 4D 5A ?? 00 } condition: $h at 0 }
rule Re { strings: $r = /ab[0-9]{2,4}cd/ condition: #r >= 1 }
rule Size { condition: filesize > 100 and uint8(0) == 0x7f }
`, ""); err != nil {
		f.Fatal(err)
	}
	r, err := c.Rules()
	c.Close()
	if err != nil {
		f.Fatal(err)
	}
	s, err := r.NewScanner()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		s.Close()
		r.Close()
	})
	f.Add([]byte("an evil string"))
	f.Add([]byte("MZ\x90\x00rest"))
	f.Add([]byte("xxab123cdyy"))
	f.Add(append([]byte{0x7f}, make([]byte, 200)...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := s.ScanMem(data)
		if err != nil {
			t.Fatal(err)
		}
		if lit := bytes.Contains(data, []byte("evil")); lit != (len(got) > 0 && got[0].Identifier == "Lit") {
			t.Fatalf("Lit matched %v, data holds the literal: %v", names(got), lit)
		}
	})
}

// Compiling arbitrary source never crashes: it compiles or fails with a
// CompileError.
func FuzzCompile(f *testing.F) {
	need(f)
	f.Add(metaRules)
	f.Add(`include "x.yar"`)
	f.Add("rule A { strings: $a = \"\\x4\" condition: $a }")
	f.Add(`rule B { condition: for any i in (1..#a) : (@a[i] > 0) }`)
	f.Fuzz(func(t *testing.T, src string) {
		c, err := libyara.NewCompiler()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = c.AddString(src, "")
		var ce *libyara.CompileError
		if err != nil && !errors.As(err, &ce) {
			t.Fatalf("error %v is not a CompileError", err)
		}
		if err == nil {
			r, err := c.Rules()
			if err != nil {
				t.Fatal(err)
			}
			r.Close()
		}
	})
}
