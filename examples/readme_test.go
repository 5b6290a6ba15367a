package examples_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// knownImports are the packages README fragments may use without saying so.
var knownImports = map[string]string{
	"bytes": "bytes", "context": "context", "errors": "errors", "fmt": "fmt", "log": "log", "time": "time",
	"psengine": "github.com/polyswarm/psengine", "cli": "github.com/polyswarm/psengine/cli",
	"category": "github.com/polyswarm/psengine/category", "fetch": "github.com/polyswarm/psengine/fetch",
	"localq": "github.com/polyswarm/psengine/localq", "webhook": "github.com/polyswarm/psengine/webhook",
}

var goBlock = regexp.MustCompile("(?ms)^```go\n(.*?)^```")

// The README's Go code compiles: each block that is a program as it is, and
// each fragment inside a function of the program before it (with its
// imports added, and its variables used), so that the README cannot drift
// from the API again.
func TestReadmeCodeCompiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds programs")
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := goBlock.FindAllSubmatch(readme, -1)
	if len(blocks) == 0 {
		t.Fatal("no ```go block in the README")
	}
	dir, err := filepath.Abs("readme-snippets") // never written: the files exist only in the overlay
	if err != nil {
		t.Fatal(err)
	}
	overlay := map[string]string{}
	var pkgs []string
	var program string // the last full program, which fragments join
	for i, m := range blocks {
		src := string(m[1])
		pkgDir := filepath.Join(dir, fmt.Sprintf("block%d", i+1))
		if strings.HasPrefix(strings.TrimSpace(src), "package ") {
			program = src
		} else {
			if program == "" {
				t.Fatalf("block %d is a fragment before any program", i+1)
			}
			frag, err := fragment(src)
			if err != nil {
				t.Fatalf("block %d: %v\n%s", i+1, err, src)
			}
			overlay[filepath.Join(pkgDir, "fragment.go")] = write(t, frag)
		}
		overlay[filepath.Join(pkgDir, "main.go")] = write(t, program)
		pkgs = append(pkgs, "./readme-snippets/"+filepath.Base(pkgDir))
	}
	data, err := json.Marshal(map[string]any{"Replace": overlay})
	if err != nil {
		t.Fatal(err)
	}
	ov := filepath.Join(t.TempDir(), "overlay.json")
	if err := os.WriteFile(ov, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", append([]string{"build", "-overlay", ov, "-o", t.TempDir() + "/"}, pkgs...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the README's Go code does not compile: %v\n%s", err, out)
	}
}

// write puts src in a temp file and returns its path.
func write(t *testing.T, src string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "*.go")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(src); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// fragment wraps README statements in a function of package main: the
// packages it names are imported, the variables it declares used.
func fragment(src string) (string, error) {
	wrapped := "package main\nfunc _() {\nctx := context.Background()\n_ = ctx\n" + src + "\n}\n"
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "", wrapped, 0)
	if err != nil {
		return "", err
	}
	var used []string
	imports := map[string]bool{"context": true}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			if id, ok := n.X.(*ast.Ident); ok && knownImports[id.Name] != "" {
				imports[id.Name] = true
			}
		case *ast.AssignStmt:
			if n.Tok == token.DEFINE {
				for _, l := range n.Lhs {
					if id, ok := l.(*ast.Ident); ok && id.Name != "_" && id.Name != "ctx" {
						used = append(used, id.Name)
					}
				}
			}
		}
		return true
	})
	var b bytes.Buffer
	b.WriteString("package main\n\nimport (\n")
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range imports {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "\t%q\n", knownImports[name])
	}
	b.WriteString(")\n\nfunc _() {\nctx := context.Background()\n_ = ctx\n" + src + "\n")
	for _, u := range used {
		fmt.Fprintf(&b, "_ = %s\n", u)
	}
	b.WriteString("}\n")
	return b.String(), nil
}
