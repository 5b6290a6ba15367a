package winex_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/polyswarm/psengine/winex"
)

// fakePrefix builds a prefix with dosdevices links as wineboot makes them
// (c: -> ../drive_c, z: -> /) plus d: to an absolute directory that z: also
// covers, and returns a Wine for it. No Wine is needed.
func fakePrefix(t testing.TB) (*winex.Wine, string) {
	t.Helper()
	root := t.TempDir()
	prefix := filepath.Join(root, "prefix")
	data := filepath.Join(root, "data disk")
	for _, d := range []string{
		filepath.Join(prefix, "dosdevices"),
		filepath.Join(prefix, "drive_c", "windows", "System32"),
		filepath.Join(data, "Signatures"),
	} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"c:":   "../drive_c",
		"d:":   data,
		"z:":   "/",
		"com1": "/dev/ttyS0",
		"c::":  "/dev/sda1",
	} {
		if err := os.Symlink(target, filepath.Join(prefix, "dosdevices", link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(data, "Signatures", "Main.CVD"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &winex.Wine{Prefix: prefix}, root
}

func TestToWindowsFakePrefix(t *testing.T) {
	needUnix(t)
	w, root := fakePrefix(t)
	prefix := w.Prefix
	tests := []struct{ unix, want string }{
		{filepath.Join(prefix, "drive_c"), `C:\`},
		{filepath.Join(prefix, "drive_c", "windows", "System32", "find.exe"), `C:\windows\System32\find.exe`},
		{filepath.Join(prefix, "dosdevices", "c:", "windows"), `C:\windows`},
		{filepath.Join(root, "data disk", "Signatures", "main.cvd"), `D:\Signatures\main.cvd`},
		{filepath.Join(root, "elsewhere", "ünïcode name.txt"), windowsOfZ(root) + `\elsewhere\ünïcode name.txt`},
		{"/", `Z:\`},
		{"/tmp/../etc/./passwd", `Z:\etc\passwd`},
	}
	for _, tt := range tests {
		got, err := w.ToWindows(tt.unix)
		if err != nil {
			t.Errorf("ToWindows(%q): %v", tt.unix, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ToWindows(%q) = %q, want %q", tt.unix, got, tt.want)
		}
	}
	// Through a symbolic link to drive_c: Wine compares inodes, so the link
	// is the root of C: too.
	link := filepath.Join(root, "link-to-c")
	if err := os.Symlink(filepath.Join(prefix, "drive_c"), link); err != nil {
		t.Fatal(err)
	}
	if got, err := w.ToWindows(filepath.Join(link, "windows", "System32")); err != nil || got != `C:\windows\System32` {
		t.Errorf("ToWindows via a link to drive_c = %q, %v; want C:\\windows\\System32", got, err)
	}
}

// windowsOfZ turns an absolute Unix path into its Z: form.
func windowsOfZ(unix string) string { return "Z:" + backslashes(unix) }

func backslashes(s string) string {
	out := []byte(s)
	for i := range out {
		if out[i] == '/' {
			out[i] = '\\'
		}
	}
	return string(out)
}

func TestToWindowsErrors(t *testing.T) {
	needUnix(t)
	w, root := fakePrefix(t)
	for _, bad := range []string{
		filepath.Join(root, "a:b"),
		filepath.Join(root, `back\slash`),
		filepath.Join(root, "what?"),
		filepath.Join(root, "tab\there"),
	} {
		if _, err := w.ToWindows(bad); !errors.Is(err, winex.ErrPath) {
			t.Errorf("ToWindows(%q) = %v, want ErrPath", bad, err)
		}
	}
	// No z: drive: paths outside drive_c map nowhere.
	if err := os.Remove(filepath.Join(w.Prefix, "dosdevices", "z:")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ToWindows("/etc/passwd"); !errors.Is(err, winex.ErrPath) {
		t.Errorf("ToWindows outside every drive = %v, want ErrPath", err)
	}
	missing := &winex.Wine{Prefix: filepath.Join(root, "nope")}
	if _, err := missing.ToWindows("/tmp"); !errors.Is(err, winex.ErrPrefix) {
		t.Errorf("ToWindows without dosdevices = %v, want ErrPrefix", err)
	}
}

func TestToUnixFakePrefix(t *testing.T) {
	needUnix(t)
	w, root := fakePrefix(t)
	prefix := w.Prefix
	driveC := filepath.Join(prefix, "drive_c")
	tests := []struct{ win, want string }{
		{`C:\`, driveC},
		{`c:`, driveC},
		{`C:\windows\system32\FIND.EXE`, filepath.Join(driveC, "windows", "System32", "FIND.EXE")},
		{`C:\WINDOWS\SYSTEM32`, filepath.Join(driveC, "windows", "System32")},
		{`c:/Windows/system32/`, filepath.Join(driveC, "windows", "System32")},
		{`C:\..\..\windows`, filepath.Join(driveC, "windows")},
		{`D:\SIGNATURES\MAIN.CVD`, filepath.Join(root, "data disk", "Signatures", "Main.CVD")},
		{`D:\new dir\new file.txt`, filepath.Join(root, "data disk", "new dir", "new file.txt")},
		{`Z:\etc\passwd`, "/etc/passwd"},
		{`\\?\C:\windows`, filepath.Join(driveC, "windows")},
		{`\\?\unix\tmp\x y`, "/tmp/x y"},
	}
	for _, tt := range tests {
		got, err := w.ToUnix(tt.win)
		if err != nil {
			t.Errorf("ToUnix(%q): %v", tt.win, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ToUnix(%q) = %q, want %q", tt.win, got, tt.want)
		}
	}
	for _, bad := range []string{`windows\system32`, `\windows`, `C:windows`, `\\server\share\x`, `Q:\x`, "C:\\a\x00b", ``} {
		if _, err := w.ToUnix(bad); !errors.Is(err, winex.ErrPath) {
			t.Errorf("ToUnix(%q) = %v, want ErrPath", bad, err)
		}
	}
}

func TestPathsRoundTrip(t *testing.T) {
	needUnix(t)
	w, root := fakePrefix(t)
	for _, p := range []string{
		filepath.Join(w.Prefix, "drive_c", "windows", "System32"),
		filepath.Join(root, "data disk", "Signatures", "Main.CVD"),
		filepath.Join(root, "some where", "é ü.bin"),
	} {
		win, err := w.ToWindows(p)
		if err != nil {
			t.Fatal(err)
		}
		back, err := w.ToUnix(win)
		if err != nil {
			t.Fatal(err)
		}
		if back != p {
			t.Errorf("%q -> %q -> %q", p, win, back)
		}
	}
}
