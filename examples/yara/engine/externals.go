package engine

import (
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/polyswarm/psengine"
)

// FileExternals are the external variables set per scan from the artifact
// (see the package doc). Every rule set may use them.
var FileExternals = []string{"filename", "filepath", "extension", "filetype", "owner"}

// FileValues are the values of the file externals for one scan.
type FileValues struct {
	Name, Path, Extension, Type, Owner string
}

// values returns them in the order of FileExternals.
func (v FileValues) values() [5]string {
	return [5]string{v.Name, v.Path, v.Extension, v.Type, v.Owner}
}

// ArtifactExternals are the file externals of an artifact: its path (a
// local file's, or its URL's), the owner of a local file, and the type
// detected from its content.
func ArtifactExternals(a psengine.Artifact) FileValues {
	p, local := artifactPath(a.URI)
	return PathExternals(p, local, a.MIMEType)
}

// PathExternals are the file externals of the file at p (local: on this
// machine, whose owner is looked up) with the given mimetype ("" to leave
// filetype empty).
func PathExternals(p string, local bool, mimeType string) FileValues {
	v := FileValues{Path: p, Type: FileType(mimeType)}
	if p != "" {
		v.Name = path.Base(filepath.ToSlash(p))
		v.Extension = strings.ToLower(path.Ext(v.Name))
	}
	if local && p != "" {
		v.Owner = fileOwner(p)
	}
	return v
}

// artifactPath is the path an artifact URI names: a local file's absolute
// path (local), a URL's path, or "" (stdin, data:).
func artifactPath(uri string) (p string, local bool) {
	if uri == "" || uri == "-" {
		return "", false
	}
	if scheme, ok := uriScheme(uri); ok {
		u, err := url.Parse(uri)
		if err != nil {
			return "", false
		}
		switch scheme {
		case "file":
			return filepath.FromSlash(u.Path), true
		case "data", "stdin":
			return "", false
		}
		return u.Path, false
	}
	abs, err := filepath.Abs(uri)
	if err != nil {
		return uri, true
	}
	return abs, true
}

// uriScheme returns the lowercase scheme of uri when it has one of two or
// more characters (as the fetch package reads them: a one-letter scheme is
// a Windows drive).
func uriScheme(uri string) (string, bool) {
	i := strings.IndexByte(uri, ':')
	if i < 2 {
		return "", false
	}
	for j, c := range uri[:i] {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (j == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return "", false
		}
	}
	return strings.ToLower(uri[:i]), true
}

// fileTypes names content types for the filetype external, by mimetype
// (parameters removed).
var fileTypes = map[string]string{
	"application/vnd.microsoft.portable-executable": "EXE",
	"application/x-dosexec":                         "EXE",
	"application/x-msdownload":                      "EXE",
	"application/x-elf":                             "ELF",
	"application/x-executable":                      "ELF",
	"application/x-sharedlib":                       "ELF",
	"application/x-object":                          "ELF",
	"application/x-coredump":                        "ELF",
	"application/x-mach-binary":                     "MACHO",
	"application/zip":                               "ZIP",
	"application/x-rar-compressed":                  "RAR",
	"application/vnd.rar":                           "RAR",
	"application/x-7z-compressed":                   "7Z",
	"application/gzip":                              "GZIP",
	"application/x-bzip2":                           "BZIP2",
	"application/x-xz":                              "XZ",
	"application/vnd.ms-cab-compressed":             "CAB",
	"application/x-tar":                             "TAR",
	"application/pdf":                               "PDF",
	"text/rtf":                                      "RTF",
	"application/rtf":                               "RTF",
	"application/x-ole-storage":                     "OFFICE",
	"application/msword":                            "OFFICE",
	"application/vnd.ms-excel":                      "OFFICE",
	"application/vnd.ms-powerpoint":                 "OFFICE",
	"application/vnd.openxmlformats-officedocument.wordprocessingml.document":   "OFFICE",
	"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":         "OFFICE",
	"application/vnd.openxmlformats-officedocument.presentationml.presentation": "OFFICE",
	"application/jar":                         "JAR",
	"application/java-archive":                "JAR",
	"application/vnd.android.package-archive": "APK",
	"application/x-shellscript":               "SCRIPT",
	"text/x-shellscript":                      "SCRIPT",
	"text/javascript":                         "SCRIPT",
	"application/javascript":                  "SCRIPT",
	"text/x-python":                           "SCRIPT",
	"text/x-perl":                             "SCRIPT",
	"text/x-php":                              "SCRIPT",
	"text/x-ruby":                             "SCRIPT",
	"text/x-lua":                              "SCRIPT",
	"text/x-tcl":                              "SCRIPT",
	"application/x-bat":                       "SCRIPT",
	"text/html":                               "HTML",
	"application/x-java-applet":               "CLASS",
	"image/jpeg":                              "JPEG",
	"image/png":                               "PNG",
	"image/gif":                               "GIF",
}

// FileType is the filetype external for a mimetype: the names above,
// TEXT for other text/*, else "".
func FileType(mimeType string) string {
	m, _, _ := strings.Cut(mimeType, ";")
	m = strings.ToLower(strings.TrimSpace(m))
	if t, ok := fileTypes[m]; ok {
		return t
	}
	if strings.HasPrefix(m, "text/") {
		return "TEXT"
	}
	return ""
}

// owners caches user names by uid.
var owners sync.Map // uint32 -> string

// External is an external variable with a fixed value: an int64, float64,
// bool or string.
type External struct {
	Name  string
	Value any
}

// ParseExternals reads a list of name=value (YARA_EXTERNALS) separated by
// commas or newlines; blank entries are skipped. A name is a YARA
// identifier, not one of FileExternals, given once. A value is, in this
// order: a string in double quotes with Go escapes; true or false; an
// integer (decimal, or 0x, 0o, 0b prefixed); a float (digits with a point
// or an exponent); else the text as written, spaces around it trimmed, as
// a string. Errors wrap ErrConfig and say which entry is wrong.
func ParseExternals(s string) ([]External, error) {
	var out []External
	seen := map[string]bool{}
	rest := s
	for n := 1; rest != ""; n++ {
		entry, quoted, next, err := nextEntry(rest)
		if err != nil {
			return nil, fmt.Errorf("%w: YARA_EXTERNALS entry %d: %w", ErrConfig, n, err)
		}
		rest = next
		if strings.TrimSpace(entry) == "" && !quoted {
			continue
		}
		name, value, ok := strings.Cut(entry, "=")
		name = strings.TrimSpace(name)
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: YARA_EXTERNALS entry %d %q: want name=value", ErrConfig, n, entry)
		case !isIdentifier(name):
			return nil, fmt.Errorf("%w: YARA_EXTERNALS entry %d: %q is not an identifier", ErrConfig, n, name)
		case seen[name]:
			return nil, fmt.Errorf("%w: YARA_EXTERNALS: %s given twice", ErrConfig, name)
		case slices.Contains(FileExternals, name):
			return nil, fmt.Errorf("%w: YARA_EXTERNALS: %s is set per scan from the artifact", ErrConfig, name)
		}
		seen[name] = true
		v, err := externalValue(strings.TrimSpace(value))
		if err != nil {
			return nil, fmt.Errorf("%w: YARA_EXTERNALS %s: %w", ErrConfig, name, err)
		}
		out = append(out, External{Name: name, Value: v})
	}
	return out, nil
}

// nextEntry splits the first entry off s: up to a comma or newline outside
// double quotes.
func nextEntry(s string) (entry string, quoted bool, rest string, err error) {
	in, esc := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			esc = false
		case in && c == '\\':
			esc = true
		case c == '"':
			in, quoted = !in, true
		case !in && (c == ',' || c == '\n'):
			return s[:i], quoted, s[i+1:], nil
		}
	}
	if in {
		return "", false, "", fmt.Errorf("unterminated string")
	}
	return s, quoted, "", nil
}

func externalValue(v string) (any, error) {
	if strings.HasPrefix(v, `"`) {
		s, err := strconv.Unquote(v)
		if err != nil {
			return nil, fmt.Errorf("bad string %s: %w", v, err)
		}
		if strings.IndexByte(s, 0) >= 0 {
			return nil, fmt.Errorf("a NUL byte in %s", v)
		}
		return s, nil
	}
	if strings.ContainsAny(v, `"`) {
		return nil, fmt.Errorf("a quote inside %s (quote the whole value)", v)
	}
	switch v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	if n, err := strconv.ParseInt(v, 0, 64); err == nil {
		return n, nil
	}
	if v != "" && strings.Trim(v, "0123456789+-.eE") == "" && strings.ContainsAny(v, "0123456789") {
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return f, nil
		}
	}
	if strings.IndexByte(v, 0) >= 0 {
		return nil, fmt.Errorf("a NUL byte")
	}
	return v, nil
}

func isIdentifier(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
