package winex_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/polyswarm/psengine/winex"
)

func ExampleDecode() {
	// cmd /c echo héllo under Wine: code page 1252 with CRLF.
	fmt.Printf("%q\n", winex.Decode([]byte{0x68, 0xe9, 0x6c, 0x6c, 0x6f, 0x0d, 0x0a}, winex.Auto))
	// cmd /u /c echo hi: UTF-16LE without a byte-order mark.
	fmt.Printf("%q\n", winex.Decode([]byte{'h', 0, 'i', 0, '\r', 0, '\n', 0}, winex.Auto))
	// A caller that knows better forces the encoding.
	fmt.Printf("%q\n", winex.Decode([]byte("\x80 5"), winex.CP1252))
	// Output:
	// "héllo\n"
	// "hi\n"
	// "€ 5"
}

func ExampleFields() {
	out := "ClamAV 1.4.6/27000/Tue Nov 26 09:00:00 2024\n"
	re := regexp.MustCompile(`^ClamAV (?P<engine>[\d.]+)/(?P<signatures>\d+)`)
	f := winex.Fields(re, out)
	fmt.Println(f["engine"], f["signatures"])
	// Output: 1.4.6 27000
}

func ExampleValues() {
	out := "/s/a.exe: Win.Test.EICAR_HDB-1 FOUND\n/s/b.txt: OK\n/s/c.doc: Doc.Macro-1 FOUND\n"
	found := regexp.MustCompile(`(?m)^(?P<path>.+): (?P<name>\S+) FOUND$`)
	fmt.Println(winex.Values(found, out, "name"))
	for _, m := range winex.AllFields(found, out) {
		fmt.Println(m["path"], "->", m["name"])
	}
	// Output:
	// [Win.Test.EICAR_HDB-1 Doc.Macro-1]
	// /s/a.exe -> Win.Test.EICAR_HDB-1
	// /s/c.doc -> Doc.Macro-1
}

func ExampleWine_ToWindows() {
	// A prefix as wineboot lays it out: dosdevices/c: -> ../drive_c, z: -> /.
	root, err := os.MkdirTemp("", "prefix-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(root)
	prefix := filepath.Join(root, "prefix")
	os.MkdirAll(filepath.Join(prefix, "dosdevices"), 0o755)
	os.MkdirAll(filepath.Join(prefix, "drive_c", "windows", "system32"), 0o755)
	os.Symlink("../drive_c", filepath.Join(prefix, "dosdevices", "c:"))
	os.Symlink("/", filepath.Join(prefix, "dosdevices", "z:"))

	w := &winex.Wine{Prefix: prefix}
	win, err := w.ToWindows(filepath.Join(prefix, "drive_c", "windows", "system32", "find.exe"))
	fmt.Println(win, err)
	win, err = w.ToWindows("/etc/hosts")
	fmt.Println(win, err)

	// find.exe prints upper-cased paths: ToUnix finds the real names.
	unix, err := w.ToUnix(`C:\WINDOWS\SYSTEM32\FIND.EXE`)
	rel, _ := filepath.Rel(prefix, unix)
	fmt.Println(rel, err)
	// Output:
	// C:\windows\system32\find.exe <nil>
	// Z:\etc\hosts <nil>
	// drive_c/windows/system32/FIND.EXE <nil>
}
