package winex_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/polyswarm/psengine/winex"
)

// fakeTools creates executable scripts named names in a new directory.
func fakeTools(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestDiscover(t *testing.T) {
	needUnix(t)
	bin := fakeTools(t, "wine", "wineserver", "winepath")
	other := fakeTools(t, "wine64", "my-wineserver")
	notExec := filepath.Join(other, "plain")
	if err := os.WriteFile(notExec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	ignore := cmpopts.IgnoreUnexported(winex.Wine{})

	tests := []struct {
		name string
		env  func(string) string
		want *winex.Wine
	}{
		{
			name: "wine before wine64 whatever the PATH order, tools beside it, defaults",
			env:  env("PATH", "relative/bin:"+other+":"+bin, "HOME", "/home/u"),
			want: &winex.Wine{Loader: bin + "/wine", Server: bin + "/wineserver", PathCmd: bin + "/winepath", Prefix: "/home/u/.wine"},
		},
		{
			name: "wine64 alone, no companions",
			env:  env("PATH", other, "WINEPREFIX", "/p", "WINEDEBUG", "+relay", "TZ", "Europe/Paris"),
			want: &winex.Wine{Loader: other + "/wine64", Prefix: "/p", Debug: "+relay", TZ: "Europe/Paris"},
		},
		{
			name: "explicit variables",
			env: env("PATH", bin+":"+other, "WINELOADER", other+"/wine64", "WINESERVER", "my-wineserver",
				"WINEPATH_CMD", bin+"/winepath", "WINEPREFIX", "rel/prefix"),
			want: &winex.Wine{Loader: other + "/wine64", Server: other + "/my-wineserver", PathCmd: bin + "/winepath", Prefix: wd + "/rel/prefix"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := winex.Discover(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, w, ignore); diff != "" {
				t.Errorf("Discover (-want +got):\n%s", diff)
			}
		})
	}

	for name, getenv := range map[string]func(string) string{
		"nothing on PATH":       env("PATH", t.TempDir(), "HOME", "/h"),
		"WINELOADER missing":    env("PATH", bin, "WINELOADER", "/nonexistent/wine", "HOME", "/h"),
		"WINELOADER not exec":   env("PATH", bin, "WINELOADER", notExec, "HOME", "/h"),
		"WINESERVER not found":  env("PATH", bin, "WINESERVER", "nope-server", "HOME", "/h"),
		"only relative in PATH": env("PATH", "bin:.", "HOME", "/h"),
	} {
		if _, err := winex.Discover(getenv); !errors.Is(err, winex.ErrNoWine) {
			t.Errorf("%s: Discover = %v, want ErrNoWine", name, err)
		}
	}
	if _, err := winex.Discover(env("PATH", bin)); !errors.Is(err, winex.ErrPrefix) {
		t.Errorf("no WINEPREFIX nor HOME: %v, want ErrPrefix", err)
	}
}

func TestEnviron(t *testing.T) {
	w := &winex.Wine{Prefix: "/p", Server: "/usr/bin/wineserver", Env: []string{"WINEDLLOVERRIDES=x="}}
	want := []string{"WINEPREFIX=/p", "WINEDEBUG=-all", "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "TZ=UTC",
		"WINESERVER=/usr/bin/wineserver", "WINEDLLOVERRIDES=x="}
	if diff := cmp.Diff(want, w.Environ()); diff != "" {
		t.Errorf("Environ (-want +got):\n%s", diff)
	}
	w = &winex.Wine{Prefix: "/p", Debug: "err+all", Locale: "fr_FR.UTF-8", TZ: "Asia/Tokyo"}
	got := strings.Join(w.Environ(), " ")
	if got != "WINEPREFIX=/p WINEDEBUG=err+all LANG=fr_FR.UTF-8 LC_ALL=fr_FR.UTF-8 TZ=Asia/Tokyo" {
		t.Errorf("Environ = %s", got)
	}
}
