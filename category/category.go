// Package category names the kinds of artifacts an engine may accept, as
// PolySwarm's engine tooling names them ("pe", "office", "archives"...),
// maps mimetypes to them in both the spellings of the mimetype library
// psengine detects with and of libmagic, and gives a scanner an Acceptor
// for a set of them:
//
//	type Scanner struct{ category.Set }
//	s := Scanner{category.Accept(category.PE, category.Office)}
//
// An artifact outside them is answered UNSUPPORTED without a scan.
package category

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"mime"
	"slices"
	"strings"

	"github.com/polyswarm/psengine"
)

// ErrUnknown: a category name not in the category table.
var ErrUnknown = errors.New("category: unknown artifact category")

// The artifact categories an engine may accept (see Accept), as
// PolySwarm's original engine tooling named them. A mimetype may fall in
// several: an ELF is "elf" and "linux", a PE "pe" and "winnt", a .docx
// "office" and "office-word".
const (
	Android          = "android"           // APK, DEX
	Archives         = "archives"          // zip, 7z, rar, tar, gzip, bzip2, xz, cab, arj, cpio, ISO...
	ELF              = "elf"               // ELF executables, shared libraries, objects, core dumps
	Flash            = "flash"             // SWF, FLV
	Font             = "font"              // TrueType, OpenType, WOFF, EOT
	Linux            = "linux"             // ELF, deb and rpm packages, shell scripts
	MachO            = "mach-o"            // Mach-O and universal binaries
	Office           = "office"            // every Office document: OLE2 (.doc, .xls, .ppt, .msg...) and OOXML, OpenDocument
	OfficeWord       = "office-word"       // .doc, .docx, .docm, .dotx, .odt
	OfficeExcel      = "office-excel"      // .xls, .xlsx, .xlsm, .xlsb, .ods
	OfficePowerPoint = "office-powerpoint" // .ppt, .pptx, .pptm, .ppsx, .odp
	OSX              = "osx"               // Mach-O, disk images, xar packages
	PDF              = "pdf"
	PE               = "pe" // Windows executables and DLLs (and MZ DOS programs)
	RTF              = "rtf"
	Text             = "text"   // any text/* type, JSON, XML and scripts
	Script           = "script" // JavaScript, VBScript, PowerShell, batch, shell, Python, Perl, PHP, Ruby, Lua, Tcl
	WinNT            = "winnt"  // PE plus other Windows formats: shortcuts, installers, cabinets, CHM, batch files
	// URL is not a content type: it stands for URL artifacts, which
	// a file category never accepts.
	URL = "url"
)

// categoryTable maps each category to the mimetypes in it, in both the
// spellings of the mimetype library psengine detects with
// (github.com/gabriel-vasile/mimetype) and of libmagic (`file --mime-type`,
// which PolySwarm's bounty metadata and the Python tools use), where they
// differ: a PE is application/vnd.microsoft.portable-executable for the
// first and for libmagic >= 5.44, application/x-dosexec for older libmagic;
// an OLE2 .doc may be application/x-ole-storage, application/CDFV2 or
// application/msword. Lowercase, without parameters.
var categoryTable = map[string][]string{
	Android: {
		"application/vnd.android.package-archive",
		"application/vnd.android.dex", "application/x-dex", "application/x-android-dex",
	},
	Archives: {
		"application/zip", "application/x-zip", "application/x-zip-compressed",
		"application/x-7z-compressed",
		"application/vnd.rar", "application/x-rar", "application/x-rar-compressed",
		"application/x-tar", "application/x-gtar", "application/x-ustar",
		"application/gzip", "application/x-gzip",
		"application/x-bzip2", "application/x-bzip",
		"application/x-xz", "application/x-lzma", "application/lzip", "application/x-lzip",
		"application/zstd", "application/x-zstd", "application/x-compress",
		"application/x-cpio", "application/x-archive", "application/x-unix-archive",
		"application/vnd.ms-cab-compressed", "application/x-installshield",
		"application/x-arj", "application/x-ace-compressed", "application/x-lha", "application/x-lzh-compressed",
		"application/x-ms-compress-szdd", "application/x-ms-compress-kwaj",
		"application/x-iso9660-image", "application/x-stuffit", "application/x-xar",
		"application/java-archive", "application/x-java-archive",
	},
	ELF: {
		"application/x-elf", "application/x-executable", "application/x-sharedlib",
		"application/x-pie-executable", "application/x-object", "application/x-coredump",
	},
	Flash: {
		"application/x-shockwave-flash", "application/vnd.adobe.flash.movie", "video/x-flv",
	},
	Font: {
		"font/ttf", "font/otf", "font/sfnt", "font/woff", "font/woff2", "font/collection",
		"application/x-font-ttf", "application/x-font-otf", "application/font-sfnt",
		"application/font-woff", "application/vnd.ms-fontobject", "application/x-font-type1",
	},
	MachO: {
		"application/x-mach-binary", "application/x-mach-o-executable",
	},
	OfficeWord: {
		"application/msword", "application/vnd.ms-word",
		"application/vnd.openxmlformats-officedocument.wordprocessingml.document",
		"application/vnd.openxmlformats-officedocument.wordprocessingml.template",
		"application/vnd.ms-word.document.macroenabled.12", "application/vnd.ms-word.template.macroenabled.12",
		"application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.text-template",
	},
	OfficeExcel: {
		"application/vnd.ms-excel", "application/msexcel",
		"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
		"application/vnd.openxmlformats-officedocument.spreadsheetml.template",
		"application/vnd.ms-excel.sheet.macroenabled.12", "application/vnd.ms-excel.sheet.binary.macroenabled.12",
		"application/vnd.ms-excel.template.macroenabled.12", "application/vnd.ms-excel.addin.macroenabled.12",
		"application/vnd.oasis.opendocument.spreadsheet", "application/vnd.oasis.opendocument.spreadsheet-template",
	},
	OfficePowerPoint: {
		"application/vnd.ms-powerpoint", "application/mspowerpoint",
		"application/vnd.openxmlformats-officedocument.presentationml.presentation",
		"application/vnd.openxmlformats-officedocument.presentationml.slideshow",
		"application/vnd.openxmlformats-officedocument.presentationml.template",
		"application/vnd.ms-powerpoint.presentation.macroenabled.12", "application/vnd.ms-powerpoint.slideshow.macroenabled.12",
		"application/vnd.oasis.opendocument.presentation", "application/vnd.oasis.opendocument.presentation-template",
	},
	// Office is the three above plus these.
	Office: {
		"application/x-ole-storage", "application/cdfv2", "application/vnd.ms-office",
		"application/vnd.ms-outlook", "application/vnd.ms-publisher", "application/onenote",
		"application/vnd.visio", "application/vnd.ms-visio.drawing.main+xml", "application/x-msaccess",
	},
	PDF: {"application/pdf", "application/x-pdf"},
	PE: {
		"application/vnd.microsoft.portable-executable", "application/x-dosexec",
		"application/x-msdownload", "application/x-ms-dos-executable", "application/x-msdos-program",
		"application/x-ms-ne-executable",
	},
	RTF: {"text/rtf", "application/rtf"},
	Script: {
		"text/javascript", "application/javascript", "application/x-javascript", "application/ecmascript",
		"text/vbscript", "text/x-vbscript", "application/x-vbscript",
		"text/x-powershell", "application/x-powershell",
		"text/x-msdos-batch", "application/x-bat", "application/bat",
		"text/x-shellscript", "text/x-sh", "application/x-sh", "application/x-shellscript",
		"text/x-python", "text/x-script.python", "application/x-python", "text/x-perl", "application/x-perl",
		"text/x-php", "application/x-php", "application/x-httpd-php",
		"text/x-ruby", "application/x-ruby", "text/x-lua", "text/x-tcl", "application/x-tcl",
		"application/hta",
	},
	// Text is every text/* type (see categoriesOf), scripts and these.
	Text: {
		"application/json", "application/xml", "application/xhtml+xml", "application/x-ndjson",
		"image/svg+xml", "message/rfc822",
	},
	// WinNT is PE plus these.
	WinNT: {
		"application/x-ms-shortcut",
		"application/x-ms-installer", "application/x-msi", "application/x-windows-installer",
		"application/vnd.ms-cab-compressed", "application/x-installshield",
		"application/vnd.ms-htmlhelp", "application/x-ms-compress-szdd", "application/x-ms-compress-kwaj",
		"text/x-msdos-batch", "application/x-bat", "text/x-powershell", "text/vbscript", "text/x-vbscript", "application/hta",
		"application/x-ms-wim",
	},
	// Linux is ELF plus these.
	Linux: {
		"application/vnd.debian.binary-package", "application/x-debian-package", "application/x-rpm",
		"text/x-shellscript", "text/x-sh", "application/x-sh", "application/x-shellscript",
	},
	// OSX is MachO plus these.
	OSX: {
		"application/x-apple-diskimage", "application/x-xar", "application/x-newton-compatible-pkg",
		"application/x-mac-binhex40", "application/mac-binhex40", "image/x-icns",
	},
	URL: nil,
}

// categoryUnions: categories that include others whole.
var categoryUnions = map[string][]string{
	Office: {OfficeWord, OfficeExcel, OfficePowerPoint},
	WinNT:  {PE},
	Linux:  {ELF},
	OSX:    {MachO},
	Text:   {Script, RTF},
}

// mimeIndex maps each mimetype to its categories (sorted), built once.
var mimeIndex = func() map[string][]string {
	idx := map[string][]string{}
	var add func(cat, via string)
	add = func(cat, via string) {
		for _, m := range categoryTable[via] {
			if !slices.Contains(idx[m], cat) {
				idx[m] = append(idx[m], cat)
			}
		}
		for _, sub := range categoryUnions[via] {
			add(cat, sub)
		}
	}
	for cat := range categoryTable {
		add(cat, cat)
	}
	for _, cats := range idx {
		slices.Sort(cats)
	}
	return idx
}()

// Names lists the known categories, sorted.
func Names() []string { return slices.Sorted(maps.Keys(categoryTable)) }

// NormalizeMIMEType lowercases a mimetype and strips its parameters
// ("text/plain; charset=utf-8" -> "text/plain"). An unparseable value is
// only lowercased and trimmed up to its first ';'.
func NormalizeMIMEType(mimetype string) string {
	if t, _, err := mime.ParseMediaType(mimetype); err == nil {
		return t
	}
	t, _, _ := strings.Cut(mimetype, ";")
	return strings.ToLower(strings.TrimSpace(t))
}

// Of returns the categories a file of that mimetype falls in
// (sorted; none for a type in no category), in either spelling, with or
// without parameters. It never returns URL.
func Of(mimetype string) []string {
	t := NormalizeMIMEType(mimetype)
	cats := slices.Clone(mimeIndex[t])
	if strings.HasPrefix(t, "text/") && !slices.Contains(cats, Text) && t != psengine.URIListType {
		cats = append(cats, Text)
		slices.Sort(cats)
	}
	return cats
}

// sniff names the type of content the mimetype library leaves as
// application/octet-stream but libmagic knows, from its first bytes: ARJ,
// big-endian binary cpio, Microsoft's SZDD and KWAJ compression, ACE,
// Android's DEX. It returns "" for anything else.
func sniff(head []byte) string {
	switch {
	case len(head) >= 2 && head[0] == 0x60 && head[1] == 0xEA:
		return "application/x-arj"
	case len(head) >= 2 && head[0] == 0x71 && head[1] == 0xC7:
		return "application/x-cpio"
	case bytes.HasPrefix(head, []byte("SZDD\x88\xf0\x27\x33")):
		return "application/x-ms-compress-szdd"
	case bytes.HasPrefix(head, []byte("KWAJ\x88\xf0\x27\xd1")):
		return "application/x-ms-compress-kwaj"
	case len(head) >= 14 && string(head[7:14]) == "**ACE**":
		return "application/x-ace-compressed"
	case len(head) >= 8 && (bytes.HasPrefix(head, []byte("dex\n")) || bytes.HasPrefix(head, []byte("dey\n"))) &&
		isDigit(head[4]) && isDigit(head[5]) && isDigit(head[6]) && head[7] == 0:
		return "application/vnd.android.dex"
	}
	return ""
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

// Set is a psengine.Acceptor that accepts the artifacts of a set of
// categories (see Accept). A scanner embeds it, or calls its Accepts from
// its own. The zero value accepts nothing.
type Set struct {
	names []string
	set   map[string]bool
}

var _ psengine.Acceptor = Set{}

// Accept returns the Acceptor of the named categories (see Names), for a
// scanner to embed:
//
//	type Scanner struct{ category.Set }
//	s := Scanner{category.Accept(category.PE, category.Office)}
//
// An artifact outside them is answered UNSUPPORTED without a scan. Names are
// case-insensitive. An unknown name panics (the names are the program's
// own); use Parse for names from configuration.
func Accept(names ...string) Set {
	c, err := Parse(names...)
	if err != nil {
		panic(err)
	}
	return c
}

// Parse is Accept returning an error wrapping ErrUnknown for an unknown
// name.
func Parse(names ...string) (Set, error) {
	c := Set{set: map[string]bool{}}
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if _, ok := categoryTable[n]; !ok {
			return Set{}, fmt.Errorf("%w: %q (known: %s)", ErrUnknown, n, strings.Join(Names(), ", "))
		}
		c.set[n] = true
	}
	c.names = slices.Sorted(maps.Keys(c.set))
	return c, nil
}

// Names lists the accepted categories, sorted.
func (c Set) Names() []string { return slices.Clone(c.names) }

// Accepts tells whether a falls in one of the categories: a URL artifact
// when URL is one; a file artifact when its mimetype (either
// spelling, parameters ignored) is in one, or, when the mimetype is
// application/octet-stream or empty, when its first bytes say it is (ARJ,
// big-endian cpio, SZDD, KWAJ, ACE, DEX: types the mimetype library does
// not name).
func (c Set) Accepts(a psengine.Artifact) bool {
	if len(c.set) == 0 {
		return false
	}
	if a.Type == psengine.URLArtifact {
		return c.set[URL]
	}
	t := NormalizeMIMEType(a.MIMEType)
	if t == "" || t == "application/octet-stream" {
		if t = sniff(a.Head()); t == "" {
			return false
		}
	}
	return slices.ContainsFunc(Of(t), func(cat string) bool { return c.set[cat] })
}

// String lists the categories, comma-separated.
func (c Set) String() string { return strings.Join(c.names, ",") }
