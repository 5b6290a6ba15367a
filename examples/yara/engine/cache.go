package engine

import (
	"fmt"
	"slices"
	"strings"

	"github.com/polyswarm/psengine"
)

var _ psengine.CacheKeyer = Scanner{}

// CacheKey tells the engine's result cache what an answer depends on
// besides the artifact's content and the rules (their digest is the
// head's signatures_version): the answer policy (NoMatch, the
// informational tags) and the fixed external variables; and, when the
// rules use a file external that does not come from the content
// (filename, filepath, extension or owner), those values of the artifact:
// the same content under another name is then another key. (filetype is
// detected from the content.)
func (Scanner) CacheKey(env psengine.Env, a psengine.Artifact) (string, bool) {
	c, ok := CompiledOf(env)
	if !ok {
		return "", false
	}
	if !c.namesMatter {
		return c.config, true
	}
	v := ArtifactExternals(a)
	return c.config + fmt.Sprintf(" filename=%q filepath=%q extension=%q owner=%q", v.Name, v.Path, v.Extension, v.Owner), true
}

// cacheConfig is the configuration part of c's cache keys.
func (c *Compiled) cacheConfig() string {
	return fmt.Sprintf("no_match=%q info_tags=%q externals=%#v", c.Policy.NoMatch, c.Policy.InfoTags, c.Externals)
}

// nameExternals are the file externals whose values come from the
// artifact's name or file, not from its content.
var nameExternals = []string{"filename", "filepath", "extension", "owner"}

// usesNames reports whether the rules compiled from sources may read a
// name external: one of nameExternals appears as an identifier outside
// the comments and the text strings of a source, or a source cannot be
// read back as it was compiled (then it may).
func usesNames(sources []Source) bool {
	for _, s := range sources {
		data, ok := s.readBack()
		if !ok {
			return true // unreadable, or changed since it was compiled
		}
		for _, id := range identifiers(string(data)) {
			if slices.Contains(nameExternals, id) {
				return true
			}
		}
	}
	return false
}

// identifiers returns the words of YARA source src that are outside its
// comments (// and /* */) and text strings ("..."). Words inside regular
// expressions and hex strings are returned too: at worst a rule is
// thought to use a name it does not, which only makes cache keys finer.
func identifiers(src string) []string {
	var out []string
	for i := 0; i < len(src); {
		switch c := src[i]; {
		case strings.HasPrefix(src[i:], "//"):
			end := strings.IndexByte(src[i:], '\n')
			if end < 0 {
				return out
			}
			i += end + 1
		case strings.HasPrefix(src[i:], "/*"):
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return out
			}
			i += 2 + end + 2
		case c == '"':
			i++
			for i < len(src) && src[i] != '"' && src[i] != '\n' {
				if src[i] == '\\' {
					i++
				}
				i++
			}
			i++
		case isWordByte(c):
			start := i
			for i < len(src) && isWordByte(src[i]) {
				i++
			}
			out = append(out, src[start:i])
		default:
			i++
		}
	}
	return out
}

func isWordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
