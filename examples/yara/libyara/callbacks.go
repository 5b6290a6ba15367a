//go:build cgo && !nolibyara

package libyara

/*
#include <stdint.h>
#include <stdlib.h>
*/
import "C"

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"runtime/cgo"
	"strings"
)

// The compiler's callbacks: libyara calls them, on the goroutine running
// yr_compiler_add_string, with the Compiler's handle as user data.

// goCompilerMessage records an error or a warning, naming the file it is
// in: libyara names a top file added as a string not at all (the one being
// added), an included file by its include string.
//
//export goCompilerMessage
func goCompilerMessage(level C.int, file *C.char, line C.int, msg *C.char, h C.uintptr_t) {
	c := cgo.Handle(h).Value().(*Compiler)
	m := Message{File: c.current, Line: int(line), Text: C.GoString(msg), Warning: level != 0}
	if file != nil {
		name := C.GoString(file)
		if path, ok := c.included[name]; ok {
			m.File = path
		} else {
			m.File = name
		}
	}
	if strings.HasPrefix(m.Text, "callback failed to provide include resource") && c.includeE != "" {
		m.Text = c.includeE
	}
	if m.Warning {
		c.warnings = append(c.warnings, m)
	} else {
		c.errs = append(c.errs, m)
	}
}

// goInclude returns the source of an included file (malloc'd: libyara
// frees it with free), or NULL with the reason kept for the error message.
//
//export goInclude
func goInclude(name, calling, ns *C.char, h C.uintptr_t) *C.char {
	c := cgo.Handle(h).Value().(*Compiler)
	c.includeE = ""
	src, err := c.include(C.GoString(name), calling)
	if err != nil {
		c.includeE = err.Error()
		return nil
	}
	return C.CString(string(src))
}

func (c *Compiler) include(name string, calling *C.char) ([]byte, error) {
	from := c.current // the top file being added
	if calling != nil {
		if p, ok := c.included[C.GoString(calling)]; ok {
			from = p
		}
	}
	var path string
	switch {
	case filepath.IsAbs(name):
		path = filepath.Clean(name)
	case from != "":
		path = filepath.Join(filepath.Dir(from), name)
	default:
		abs, err := filepath.Abs(name)
		if err != nil {
			return nil, fmt.Errorf("include %q: %w", name, err)
		}
		path = abs
	}
	if prev, ok := c.included[name]; ok && prev != path {
		return nil, fmt.Errorf("include %q names %s here but %s elsewhere: libyara tells included files apart by their include string only, give them distinct names", name, path, prev)
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("include %q: %w", name, err)
	}
	if i := bytes.IndexByte(src, 0); i >= 0 {
		return nil, fmt.Errorf("include %q: %s holds a NUL byte at offset %d", name, path, i)
	}
	c.included[name] = path
	c.files = append(c.files, SourceFile{Path: path, Included: true, SHA256: sha256.Sum256(src), Size: len(src)})
	return src, nil
}
