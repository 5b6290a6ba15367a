package engine_test

import (
	"fmt"

	"github.com/polyswarm/psengine/examples/winescan/engine"
	"github.com/polyswarm/psengine/winex"
)

func ExampleParseFind() {
	// What Wine's find.exe printed for a file under "dir with spaces/ünïcødé ☃"
	// holding the marker: code page 1252, CRLF, the path upper-cased and ☃
	// (not in the code page) as '?'.
	raw := "\r\n---------- Z:\\TMP\\DIR WITH SPACES\\\xfcN\xefC\xf8D\xe9 ?\\EICAR.COM\r\n" +
		"... " + engine.Marker + " ...\r\n"
	r, err := engine.ParseFind(0, winex.Decode([]byte(raw), winex.CP1252))
	fmt.Printf("%q found=%v lines=%d err=%v\n", r.Header, r.Found, r.Lines, err)
	fmt.Println(engine.MatchesFindName(r.Header, `Z:\tmp\dir with spaces\ünïcødé ☃\eicar.com`))

	a := engine.Classify(r)
	fmt.Println(a.Verdict, a.Metadata.MalwareFamily, a.Confidence)

	// A name find.exe cannot open.
	_, err = engine.ParseFind(1, "File not found - Z:\\TMP\\CON\n")
	fmt.Println(err)
	// Output:
	// "Z:\\TMP\\DIR WITH SPACES\\üNïCøDé ?\\EICAR.COM" found=true lines=1 err=<nil>
	// true
	// malicious EICAR-Test-File 0.85
	// winescan: find.exe gave no verdict: find.exe exit 1: File not found; output "File not found - Z:\\TMP\\CON\n"
}

func ExampleParseVer() {
	v, err := engine.ParseVer("\nMicrosoft Windows 6.1.7601\n") // cmd /c ver under Wine 8.0
	fmt.Println(v, err)
	// Output: Microsoft Windows 6.1.7601 <nil>
}
