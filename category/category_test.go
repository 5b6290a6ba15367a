package category_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/category"
	"github.com/polyswarm/psengine/psenginetest"
)

// sample is one real file of a known category.
type sample struct {
	data []byte
	want []string // categories it must be in (it may be in others)
	not  []string // categories it must not be in
}

// needFile reads a sample file that ships with a package the tests may
// rely on (Go's own sources, the mimetype module, clamav-testfiles, Wine):
// when it is missing the sample is skipped, except under CI=true, where
// CI installs them all.
func needFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("sample file missing under CI: %v", err)
		}
		t.Skipf("sample file missing: %v", err)
	}
	return b
}

// goOutput runs the go command (the tests run under it: it is on PATH).
func goOutput(args ...string) (string, error) {
	out, err := exec.Command("go", args...).Output()
	return strings.TrimSpace(string(out)), err
}

var (
	mimetypeDir = sync.OnceValues(func() (string, error) {
		return goOutput("list", "-m", "-f", "{{.Dir}}", "github.com/gabriel-vasile/mimetype")
	})
	goRoot = sync.OnceValues(func() (string, error) { return goOutput("env", "GOROOT") })
)

// mimetypeFile reads a file of the mimetype module's testdata (in the module
// cache: the module is a dependency).
func mimetypeFile(t *testing.T, name string) []byte {
	t.Helper()
	dir, err := mimetypeDir()
	if err != nil || dir == "" {
		t.Fatalf("locating the mimetype module: %v", err)
	}
	return needFile(t, filepath.Join(dir, "testdata", name))
}

// goSrcFile reads a file of Go's own sources (testdata of the standard
// library).
func goSrcFile(t *testing.T, rel string) []byte {
	t.Helper()
	root, err := goRoot()
	if err != nil || root == "" {
		t.Fatalf("go env GOROOT: %v", err)
	}
	return needFile(t, filepath.Join(root, "src", rel))
}

func base64File(t *testing.T, b []byte) []byte {
	t.Helper()
	out, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(b)), ""))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// zipOf builds a zip archive holding the named files.
func zipOf(t *testing.T, files ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := 0; i+1 < len(files); i += 2 {
		w, err := zw.Create(files[i])
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(files[i+1]))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tarGz(t *testing.T) (tarball, gz []byte) {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	body := []byte("hello from a tar archive\n")
	tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write(body)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gb bytes.Buffer
	zw := gzip.NewWriter(&gb)
	zw.Write(tb.Bytes())
	zw.Close()
	return tb.Bytes(), gb.Bytes()
}

// trueType builds a minimal TrueType font file: the sfnt header and a table
// directory (head, hhea, maxp) pointing at zeroed tables.
func trueType() []byte {
	tags := []string{"head", "hhea", "maxp"}
	sizes := []uint32{54, 36, 6}
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, []uint16{0x0001, 0x0000, uint16(len(tags)), 32, 1, 16})
	off := uint32(12 + 16*len(tags))
	for i, tag := range tags {
		b.WriteString(tag)
		binary.Write(&b, binary.BigEndian, []uint32{0, off, sizes[i]})
		off += (sizes[i] + 3) &^ 3
	}
	for _, s := range sizes {
		b.Write(make([]byte, (s+3)&^3))
	}
	return b.Bytes()
}

// swf builds an uncompressed Flash movie: header, an empty frame rectangle
// (5-bit fields of 0), 24 fps, one frame, a ShowFrame and an End tag.
func swf() []byte {
	body := []byte{0x00, 0x00, 0x18, 0x01, 0x00, 0x40, 0x00, 0x00, 0x00}
	b := append([]byte("FWS\x0a"), binary.LittleEndian.AppendUint32(nil, uint32(8+len(body)))...)
	return append(b, body...)
}

// pdf builds a one-page PDF with a correct cross-reference table.
func pdf() []byte {
	objs := []string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
	}
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n")
	var offs []int
	for i, o := range objs {
		offs = append(offs, b.Len())
		b.WriteString(strings.Join([]string{itoa(i + 1), " 0 obj\n", o, "\nendobj\n"}, ""))
	}
	xref := b.Len()
	b.WriteString("xref\n0 " + itoa(len(objs)+1) + "\n0000000000 65535 f \n")
	for _, o := range offs {
		s := itoa(o)
		b.WriteString(strings.Repeat("0", 10-len(s)) + s + " 00000 n \n")
	}
	b.WriteString("trailer\n<< /Size " + itoa(len(objs)+1) + " /Root 1 0 R >>\nstartxref\n" + itoa(xref) + "\n%%EOF\n")
	return b.Bytes()
}

func itoa(i int) string { return strconv.Itoa(i) }

// lnk builds the 76-byte header of a Windows shell link (.lnk) with no
// optional parts.
func lnk() []byte {
	h := make([]byte, 76)
	binary.LittleEndian.PutUint32(h, 0x4C)
	copy(h[4:], []byte{0x01, 0x14, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x46})
	return h
}

// dex builds the 112-byte header of an empty Android DEX file.
func dex() []byte {
	h := make([]byte, 112)
	copy(h, "dex\n035\x00")
	binary.LittleEndian.PutUint32(h[32:], 112)        // file_size
	binary.LittleEndian.PutUint32(h[36:], 112)        // header_size
	binary.LittleEndian.PutUint32(h[40:], 0x12345678) // endian_tag
	return h
}

// samples are real files of every category: built here, or read from Go's
// sources, the mimetype module's testdata, clamav-testfiles and Wine.
func samples(t *testing.T) map[string]func(t *testing.T) sample {
	return map[string]func(t *testing.T) sample{
		"apk": func(t *testing.T) sample {
			return sample{data: mimetypeFile(t, "app-metadata.apk"), want: []string{"android"}, not: []string{"archives", "office"}}
		},
		"dex": func(t *testing.T) sample { return sample{data: dex(), want: []string{"android"}, not: []string{"pe"}} },
		"zip": func(t *testing.T) sample {
			return sample{data: zipOf(t, "a.txt", "hello"), want: []string{"archives"}, not: []string{"office", "android"}}
		},
		"go zip testdata": func(t *testing.T) sample {
			return sample{data: goSrcFile(t, "archive/zip/testdata/readme.zip"), want: []string{"archives"}}
		},
		"tar": func(t *testing.T) sample { tb, _ := tarGz(t); return sample{data: tb, want: []string{"archives"}} },
		"gzip": func(t *testing.T) sample {
			_, gz := tarGz(t)
			return sample{data: gz, want: []string{"archives"}, not: []string{"text"}}
		},
		"bzip2": func(t *testing.T) sample {
			return sample{data: goSrcFile(t, "compress/bzip2/testdata/e.txt.bz2"), want: []string{"archives"}}
		},
		"jar": func(t *testing.T) sample { return sample{data: mimetypeFile(t, "jar.jar"), want: []string{"archives"}} },
		"7z": func(t *testing.T) sample {
			return sample{data: needFile(t, "/usr/share/clamav-testfiles/clam.7z"), want: []string{"archives"}}
		},
		"arj (sniffed)": func(t *testing.T) sample {
			return sample{data: needFile(t, "/usr/share/clamav-testfiles/clam.arj"), want: []string{"archives"}}
		},
		"big-endian cpio (sniffed)": func(t *testing.T) sample {
			return sample{data: needFile(t, "/usr/share/clamav-testfiles/clam.bin-be.cpio"), want: []string{"archives"}}
		},
		"szdd (sniffed)": func(t *testing.T) sample {
			return sample{data: needFile(t, "/usr/share/clamav-testfiles/clam.exe.szdd"), want: []string{"archives", "winnt"}, not: []string{"pe"}}
		},
		"cab": func(t *testing.T) sample {
			return sample{data: needFile(t, "/usr/share/clamav-testfiles/clam.cab"), want: []string{"archives", "winnt"}}
		},
		"elf executable": func(t *testing.T) sample {
			return sample{data: goSrcFile(t, "debug/elf/testdata/gcc-amd64-linux-exec"), want: []string{"elf", "linux"}, not: []string{"pe", "osx"}}
		},
		"elf shared library": func(t *testing.T) sample {
			return sample{data: goSrcFile(t, "debug/elf/testdata/libtiffxx.so_"), want: []string{"elf", "linux"}}
		},
		"elf object": func(t *testing.T) sample {
			return sample{data: goSrcFile(t, "debug/elf/testdata/go-relocation-test-clang-x86.obj"), want: []string{"elf"}}
		},
		"swf": func(t *testing.T) sample { return sample{data: swf(), want: []string{"flash"}, not: []string{"text"}} },
		"ttf": func(t *testing.T) sample { return sample{data: trueType(), want: []string{"font"}} },
		"woff2": func(t *testing.T) sample {
			return sample{data: append([]byte("wOF2\x00\x01\x00\x00"), make([]byte, 40)...), want: []string{"font"}}
		},
		"mach-o": func(t *testing.T) sample {
			return sample{data: base64File(t, goSrcFile(t, "debug/macho/testdata/gcc-amd64-darwin-exec.base64")), want: []string{"mach-o", "osx"}, not: []string{"elf", "linux"}}
		},
		"mach-o universal": func(t *testing.T) sample {
			return sample{data: base64File(t, goSrcFile(t, "debug/macho/testdata/fat-gcc-386-amd64-darwin-exec.base64")), want: []string{"mach-o", "osx"}}
		},
		"doc": func(t *testing.T) sample {
			return sample{data: mimetypeFile(t, "doc.doc"), want: []string{"office", "office-word"}, not: []string{"office-excel"}}
		},
		"ole doc (x-ole-storage)": func(t *testing.T) sample {
			return sample{data: needFile(t, "/usr/share/clamav-testfiles/clam.ole.doc"), want: []string{"office"}, not: []string{"pe"}}
		},
		"docx": func(t *testing.T) sample {
			return sample{data: mimetypeFile(t, "docx.docx"), want: []string{"office", "office-word"}, not: []string{"archives"}}
		},
		"xls": func(t *testing.T) sample {
			return sample{data: mimetypeFile(t, "xls.xls"), want: []string{"office", "office-excel"}}
		},
		"xlsx": func(t *testing.T) sample {
			return sample{data: mimetypeFile(t, "xlsx.xlsx"), want: []string{"office", "office-excel"}, not: []string{"office-word"}}
		},
		"ppt": func(t *testing.T) sample {
			return sample{data: mimetypeFile(t, "ppt.ppt"), want: []string{"office", "office-powerpoint"}}
		},
		"pptx": func(t *testing.T) sample {
			return sample{data: mimetypeFile(t, "pptx.pptx"), want: []string{"office", "office-powerpoint"}}
		},
		"msg": func(t *testing.T) sample { return sample{data: mimetypeFile(t, "msg.msg"), want: []string{"office"}} },
		"pdf": func(t *testing.T) sample { return sample{data: pdf(), want: []string{"pdf"}, not: []string{"text"}} },
		"clamav pdf": func(t *testing.T) sample {
			return sample{data: needFile(t, "/usr/share/clamav-testfiles/clam.pdf"), want: []string{"pdf"}}
		},
		"pe": func(t *testing.T) sample {
			return sample{data: goSrcFile(t, "debug/pe/testdata/gcc-amd64-mingw-exec"), want: []string{"pe", "winnt"}, not: []string{"elf", "office"}}
		},
		"packed pe": func(t *testing.T) sample {
			return sample{data: needFile(t, "/usr/share/clamav-testfiles/clam-upx.exe"), want: []string{"pe", "winnt"}}
		},
		"wine dll": func(t *testing.T) sample {
			return sample{data: needFile(t, "/usr/lib/x86_64-linux-gnu/wine/x86_64-windows/kernel32.dll"), want: []string{"pe", "winnt"}}
		},
		"rtf": func(t *testing.T) sample {
			return sample{data: []byte(`{\rtf1\ansi\deff0 {\fonttbl {\f0 Times;}}\f0 Hello.\par}`), want: []string{"rtf", "text"}, not: []string{"script"}}
		},
		"plain text (charset parameter)": func(t *testing.T) sample {
			return sample{data: []byte("héllo, world\n"), want: []string{"text"}, not: []string{"script", "pe"}}
		},
		"shell script": func(t *testing.T) sample {
			return sample{data: []byte("#!/bin/sh\necho hello\n"), want: []string{"script", "text", "linux"}, not: []string{"elf", "winnt"}}
		},
		"python": func(t *testing.T) sample {
			return sample{data: []byte("#!/usr/bin/env python3\nprint('hello')\n"), want: []string{"script", "text"}}
		},
		"html": func(t *testing.T) sample {
			return sample{data: []byte("<!DOCTYPE html><html><body>hi</body></html>"), want: []string{"text"}, not: []string{"script"}}
		},
		"lnk": func(t *testing.T) sample { return sample{data: lnk(), want: []string{"winnt"}, not: []string{"pe"}} },
		"msi": func(t *testing.T) sample {
			return sample{data: mimetypeFile(t, "msi.msi"), want: []string{"winnt"}, not: []string{"pe", "office-word"}}
		},
		"chm": func(t *testing.T) sample {
			return sample{data: needFile(t, "/usr/share/clamav-testfiles/clam.chm"), want: []string{"winnt"}}
		},
		"gif (no category)": func(t *testing.T) sample {
			return sample{data: mimetypeFile(t, "gif.gif"), not: category.Names()}
		},
		"random bytes (no category)": func(t *testing.T) sample {
			return sample{data: []byte{0x13, 0x37, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02}, not: category.Names()}
		},
	}
}

// Each real file falls in its categories (by the mimetype psengine detects
// from its first bytes), an acceptor of one of them accepts it, and one of
// the others refuses it.
func TestAcceptCategoriesRealFiles(t *testing.T) {
	all := samples(t)
	covered := map[string]bool{}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range all {
			if !yield(k) {
				return
			}
		}
	}) {
		t.Run(name, func(t *testing.T) {
			s := all[name](t)
			a := psenginetest.Artifact(t, s.data)
			for _, cat := range s.want {
				covered[cat] = true
				if !category.Accept(cat).Accepts(a) {
					t.Errorf("AcceptCategories(%q) refuses it (mimetype %s, categories %v)", cat, a.MIMEType, category.Of(a.MIMEType))
				}
			}
			for _, cat := range s.not {
				if category.Accept(cat).Accepts(a) {
					t.Errorf("AcceptCategories(%q) accepts it (mimetype %s)", cat, a.MIMEType)
				}
			}
			// Several categories: one match is enough.
			if len(s.want) > 0 && len(s.not) > 0 {
				both := category.Accept(append([]string{s.want[0]}, s.not...)...)
				if !both.Accepts(a) {
					t.Errorf("%v refuses it", both)
				}
			}
		})
	}
	if t.Failed() || t.Skipped() {
		return
	}
	for _, cat := range category.Names() {
		if cat != category.URL && !covered[cat] && os.Getenv("CI") == "true" {
			t.Errorf("no real file tested for category %q", cat)
		}
	}
}

// The two spellings of a type name the same categories; parameters and
// case do not matter.
func TestMIMECategoriesSpellings(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"application/vnd.microsoft.portable-executable", "application/x-dosexec"},
		{"application/x-ole-storage", "application/CDFV2"},
		{"text/plain; charset=utf-8", "TEXT/PLAIN"},
		{"application/vnd.rar", "application/x-rar-compressed"},
		{"application/gzip", "application/x-gzip"},
		{"font/ttf", "font/sfnt"},
		{"text/x-shellscript", "application/x-sh"},
		{"application/msword", "application/vnd.ms-word"},
	} {
		ca, cb := category.Of(tc.a), category.Of(tc.b)
		if len(ca) == 0 || !slices.Equal(ca, cb) {
			t.Errorf("MIMECategories(%q) = %v, MIMECategories(%q) = %v: want the same, not empty", tc.a, ca, tc.b, cb)
		}
	}
	if got := category.Of("application/x-dosexec"); !slices.Equal(got, []string{"pe", "winnt"}) {
		t.Errorf("x-dosexec: %v", got)
	}
	if got := category.Of("image/png"); len(got) != 0 {
		t.Errorf("image/png: %v, want none", got)
	}
	if got := category.NormalizeMIMEType(" Text/HTML ; charset=ISO-8859-1"); got != "text/html" {
		t.Errorf("NormalizeMIMEType = %q", got)
	}
}

func TestAcceptCategoriesURLsAndZero(t *testing.T) {
	u := psenginetest.URLArtifact(t, "https://example.com/x")
	if category.Accept("text", "pe").Accepts(u) {
		t.Error("file categories accept a URL artifact")
	}
	if !category.Accept("url").Accepts(u) {
		t.Error(`"url" refuses a URL artifact`)
	}
	if category.Accept("url").Accepts(psenginetest.Artifact(t, []byte("text"))) {
		t.Error(`"url" accepts a file`)
	}
	if (category.Set{}).Accepts(psenginetest.Artifact(t, pdf())) {
		t.Error("the zero Categories accepts a file")
	}
	c := category.Accept("PE", " office ", "pe")
	if got := c.Names(); !slices.Equal(got, []string{"office", "pe"}) {
		t.Errorf("Names = %v", got)
	}
}

func TestParseCategoriesUnknown(t *testing.T) {
	_, err := category.Parse("pe", "executables")
	if !errors.Is(err, category.ErrUnknown) || !strings.Contains(err.Error(), `"executables"`) {
		t.Errorf("ParseCategories = %v, want ErrUnknownCategory naming the name", err)
	}
	defer func() {
		if r := recover(); r == nil {
			t.Error("AcceptCategories with an unknown name did not panic")
		}
	}()
	category.Accept("nope")
}

// peOnly scans PEs only: it embeds the acceptor.
type peOnly struct{ category.Set }

func (peOnly) Scan(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
	return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.5}, nil
}

// Through the engine, an artifact outside the scanner's categories is
// answered with the protocol's UNSUPPORTED result, without a scan.
func TestEngineAnswersUnsupportedOutsideCategories(t *testing.T) {
	e := psenginetest.Engine(t, peOnly{category.Accept(category.PE)})
	pe := goSrcFile(t, "debug/pe/testdata/gcc-amd64-mingw-exec")
	if res := psenginetest.Analyze(t, e, pe); res.Analysis.Verdict != psengine.Benign {
		t.Errorf("PE: %+v, want the scanner's benign", res.Analysis)
	}
	res := psenginetest.Analyze(t, e, pdf())
	want := psengine.Unsupported()
	if res.Analysis.Verdict != want.Verdict || !slices.Equal(res.Analysis.Metadata.Comments, want.Metadata.Comments) || res.Analysis.Bid != 0 {
		t.Errorf("PDF: %+v, want UNSUPPORTED %+v", res.Analysis, want)
	}
}
