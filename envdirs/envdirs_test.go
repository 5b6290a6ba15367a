package envdirs_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/polyswarm/psengine/envdirs"
)

func fakeEnv(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestResolve(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	uid := os.Getuid()
	tests := []struct {
		name      string
		env       func(string) string
		want      envdirs.Dirs
		wantWarns int
	}{
		{
			name: "home layout",
			env:  fakeEnv("PSENGINE_HOME", "/opt/eng", "TMPDIR", "/scratch", "HOME", "/root"),
			want: envdirs.Dirs{
				Home: "/opt/eng", Bin: "/opt/eng/bin", Lib: "/opt/eng/lib", Secrets: "/opt/eng/secrets",
				Config: "/opt/eng/etc", Cache: "/opt/eng/cache", Data: "/opt/eng/share",
				State: "/opt/eng/state", Runtime: "/opt/eng/run", Temp: "/scratch", TempPrefix: "clam-",
			},
		},
		{
			name: "relative home against the working directory, overrides against home",
			env: fakeEnv("PSENGINE_HOME", "deploy/./eng/", "PSENGINE_CONFIG_DIR", "/etc/eng",
				"PSENGINE_CACHE_DIR", "../cache", "PSENGINE_RUNTIME_DIR", "/run/eng",
				"PSENGINE_SCANNER", "clamscan", "PSENGINE_UPDATER", "/usr/bin/freshclam",
				"TMPPREFIX", "scan-"),
			want: envdirs.Dirs{
				Home: wd + "/deploy/eng", Bin: wd + "/deploy/eng/bin", Lib: wd + "/deploy/eng/lib",
				Secrets: wd + "/deploy/eng/secrets", Config: "/etc/eng", Cache: wd + "/deploy/cache",
				Data: wd + "/deploy/eng/share", State: wd + "/deploy/eng/state", Runtime: "/run/eng",
				Temp: "/tmp", TempPrefix: "scan-",
				Scanner: wd + "/deploy/eng/bin/clamscan", Updater: "/usr/bin/freshclam",
			},
		},
		{
			name: "scanner relative to an overridden bin",
			env: fakeEnv("PSENGINE_HOME", "/e", "PSENGINE_BIN_DIR", "/usr/libexec/eng",
				"PSENGINE_SCANNER", "sub/../scan.exe"),
			want: envdirs.Dirs{
				Home: "/e", Bin: "/usr/libexec/eng", Lib: "/e/lib", Secrets: "/e/secrets", Config: "/e/etc",
				Cache: "/e/cache", Data: "/e/share", State: "/e/state", Runtime: "/e/run",
				Temp: "/tmp", TempPrefix: "clam-", Scanner: "/usr/libexec/eng/scan.exe",
			},
		},
		{
			name: "xdg defaults from HOME",
			env:  fakeEnv("HOME", "/home/u", "XDG_RUNTIME_DIR", "/run/user/1000"),
			want: envdirs.Dirs{
				Home: "/home/u/.local/share/clam", Bin: "/home/u/.local/share/clam/bin",
				Lib: "/home/u/.local/share/clam/lib", Secrets: "/home/u/.config/clam/secrets",
				Config: "/home/u/.config/clam", Cache: "/home/u/.cache/clam",
				Data: "/home/u/.local/share/clam", State: "/home/u/.local/state/clam",
				Runtime: "/run/user/1000/clam", Temp: "/tmp", TempPrefix: "clam-",
			},
		},
		{
			name: "xdg variables",
			env: fakeEnv("HOME", "/home/u", "XDG_CONFIG_HOME", "/cfg", "XDG_CACHE_HOME", "/c",
				"XDG_DATA_HOME", "/d", "XDG_STATE_HOME", "/s", "XDG_RUNTIME_DIR", "/r",
				"PSENGINE_LIB_DIR", "lib64"),
			want: envdirs.Dirs{
				Home: "/d/clam", Bin: "/d/clam/bin", Lib: "/d/clam/lib64", Secrets: "/cfg/clam/secrets",
				Config: "/cfg/clam", Cache: "/c/clam", Data: "/d/clam", State: "/s/clam",
				Runtime: "/r/clam", Temp: "/tmp", TempPrefix: "clam-",
			},
		},
		{
			name: "relative xdg ignored, runtime falls back to temp with warnings",
			env: fakeEnv("HOME", "/home/u", "XDG_CACHE_HOME", "rel/cache", "XDG_RUNTIME_DIR", "run",
				"TMPDIR", "/var/tmp/"),
			want: envdirs.Dirs{
				Home: "/home/u/.local/share/clam", Bin: "/home/u/.local/share/clam/bin",
				Lib: "/home/u/.local/share/clam/lib", Secrets: "/home/u/.config/clam/secrets",
				Config: "/home/u/.config/clam", Cache: "/home/u/.cache/clam",
				Data: "/home/u/.local/share/clam", State: "/home/u/.local/state/clam",
				Runtime: fmt.Sprintf("/var/tmp/clam-runtime-%d", uid), Temp: "/var/tmp", TempPrefix: "clam-",
			},
			wantWarns: 3,
		},
		{
			name: "zsh-style TMPPREFIX path",
			env:  fakeEnv("PSENGINE_HOME", "/e", "TMPDIR", "/ignored", "TMPPREFIX", "/var/tmp/zsh"),
			want: envdirs.Dirs{
				Home: "/e", Bin: "/e/bin", Lib: "/e/lib", Secrets: "/e/secrets", Config: "/e/etc",
				Cache: "/e/cache", Data: "/e/share", State: "/e/state", Runtime: "/e/run",
				Temp: "/var/tmp", TempPrefix: "zsh",
			},
		},
		{
			name: "TMPPREFIX directory only",
			env:  fakeEnv("PSENGINE_HOME", "/e", "TMPPREFIX", "/var/tmp/"),
			want: envdirs.Dirs{
				Home: "/e", Bin: "/e/bin", Lib: "/e/lib", Secrets: "/e/secrets", Config: "/e/etc",
				Cache: "/e/cache", Data: "/e/share", State: "/e/state", Runtime: "/e/run",
				Temp: "/var/tmp", TempPrefix: "clam-",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, warns, err := envdirs.Resolve("clam", tt.env)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Resolve (-want +got):\n%s", diff)
			}
			if len(warns) != tt.wantWarns {
				t.Errorf("warnings = %q, want %d", warns, tt.wantWarns)
			}
		})
	}
}

func TestResolveRuntimeWarning(t *testing.T) {
	_, warns, err := envdirs.Resolve("clam", fakeEnv("HOME", "/h"))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "XDG_RUNTIME_DIR") {
		t.Errorf("warnings = %q, want one about XDG_RUNTIME_DIR", warns)
	}
	// An explicit runtime directory silences it.
	_, warns, err = envdirs.Resolve("clam", fakeEnv("HOME", "/h", "PSENGINE_RUNTIME_DIR", "/r"))
	if err != nil || len(warns) != 0 {
		t.Errorf("explicit runtime: warnings %q, err %v; want none", warns, err)
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		name   string
		engine string
		env    func(string) string
		want   error
	}{
		{"empty engine", "", fakeEnv("PSENGINE_HOME", "/e"), envdirs.ErrEngine},
		{"dot engine", "..", fakeEnv("PSENGINE_HOME", "/e"), envdirs.ErrEngine},
		{"engine with slash", "a/b", fakeEnv("PSENGINE_HOME", "/e"), envdirs.ErrEngine},
		{"no home at all", "e", fakeEnv(), envdirs.ErrNoHome},
		{"relative HOME", "e", fakeEnv("HOME", "home"), envdirs.ErrInvalid},
		{"NUL in a dir", "e", fakeEnv("PSENGINE_HOME", "/e", "PSENGINE_DATA_DIR", "a\x00b"), envdirs.ErrInvalid},
		{"NUL in home", "e", fakeEnv("PSENGINE_HOME", "/e\x00"), envdirs.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := envdirs.Resolve(tt.engine, tt.env)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Resolve error = %v, want %v", err, tt.want)
			}
		})
	}
	_, _, err := envdirs.Resolve("e", fakeEnv("HOME", "/h", "PSENGINE_STATE_DIR", "s\x00"))
	var ve *envdirs.VarError
	if !errors.As(err, &ve) || ve.Name != "PSENGINE_STATE_DIR" {
		t.Errorf("error %v: want a *VarError naming PSENGINE_STATE_DIR", err)
	}
}

func TestFromEnv(t *testing.T) {
	home := t.TempDir()
	t.Setenv("PSENGINE_HOME", home)
	t.Setenv("PSENGINE_SCANNER", "scan")
	d, _, err := envdirs.FromEnv("e")
	if err != nil {
		t.Fatal(err)
	}
	if d.Home != home || d.Scanner != filepath.Join(home, "bin", "scan") {
		t.Errorf("FromEnv = %+v, want home %s and its bin/scan", d, home)
	}
}

// layout returns resolved directories under a fresh temp home.
func layout(t *testing.T) envdirs.Dirs {
	t.Helper()
	root := t.TempDir()
	d, _, err := envdirs.Resolve("e", fakeEnv("PSENGINE_HOME", root, "TMPDIR", root))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestEnsureThenCheck(t *testing.T) {
	d := layout(t)
	if err := d.Check(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Check before Ensure = %v, want runtime missing (fs.ErrNotExist)", err)
	}
	if err := d.Ensure(); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if err := d.Ensure(); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	for path, want := range map[string]fs.FileMode{d.Runtime: 0o700, d.Secrets: 0o700} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %#o, want %#o", path, got, want)
		}
	}
	for _, p := range []string{d.Bin, d.Lib, d.Config, d.Cache, d.Data, d.State} {
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			t.Errorf("%s not created: %v", p, err)
		}
	}
	if err := d.Check(); err != nil {
		t.Errorf("Check after Ensure: %v", err)
	}
}

func TestCheckErrors(t *testing.T) {
	t.Run("runtime mode 0755 is fine, 0775 is not", func(t *testing.T) {
		d := layout(t)
		if err := d.Ensure(); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d.Runtime, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := d.Check(); err != nil {
			t.Errorf("Check with a runtime directory of mode 0755: %v, want nil", err)
		}
		if err := os.Chmod(d.Runtime, 0o775); err != nil {
			t.Fatal(err)
		}
		err := d.Check()
		var ce *envdirs.CheckError
		if !errors.Is(err, envdirs.ErrInsecure) || !errors.As(err, &ce) {
			t.Fatalf("Check = %v, want a *CheckError wrapping ErrInsecure", err)
		}
		want := envdirs.CheckError{Role: "runtime", Path: d.Runtime, Mode: 0o775,
			Problem: "mode 0775 lets the group or others write in it, want 0700", Fix: "chmod 700 " + d.Runtime, Err: envdirs.ErrInsecure}
		if diff := cmp.Diff(want, *ce, cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
			t.Errorf("CheckError (-want +got):\n%s", diff)
		}
		if want := "envdirs: runtime directory: " + d.Runtime + ": mode 0775 lets the group or others write in it, want 0700 (fix: chmod 700 " + d.Runtime + ")"; err.Error() != want {
			t.Errorf("message %q, want %q (the path and the fix)", err, want)
		}
	})
	t.Run("runtime is a file", func(t *testing.T) {
		d := layout(t)
		if err := os.WriteFile(d.Runtime, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := d.Check(); !errors.Is(err, envdirs.ErrNotDir) {
			t.Errorf("Check = %v, want ErrNotDir", err)
		}
	})
	t.Run("runtime owned by someone else", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("needs root to give a directory away")
		}
		d := layout(t)
		if err := d.Ensure(); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d.Runtime, 4321, 4321); err != nil {
			t.Fatal(err)
		}
		err := d.Check()
		var ce *envdirs.CheckError
		if !errors.As(err, &ce) || !errors.Is(err, envdirs.ErrInsecure) || !strings.Contains(ce.Problem, "uid 4321") {
			t.Errorf("Check = %v, want ErrInsecure naming uid 4321", err)
		}
	})
	t.Run("world-readable secret", func(t *testing.T) {
		d := layout(t)
		if err := d.Ensure(); err != nil {
			t.Fatal(err)
		}
		ok := filepath.Join(d.Secrets, "api.key")
		bad := filepath.Join(d.Secrets, "licence.txt")
		if err := os.WriteFile(ok, []byte("k"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bad, []byte("l"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(bad, 0o644); err != nil {
			t.Fatal(err)
		}
		err := d.Check()
		var ce *envdirs.CheckError
		if !errors.As(err, &ce) || ce.Path != bad || ce.Role != "secrets" || ce.Mode != 0o644 {
			t.Fatalf("Check = %v, want a *CheckError for %s", err, bad)
		}
		if strings.Contains(err.Error(), ok) {
			t.Errorf("Check blamed the 0600 file too: %v", err)
		}
	})
	t.Run("world-readable secrets dir and symlink target", func(t *testing.T) {
		d := layout(t)
		if err := d.Ensure(); err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(d.Data, "public.key")
		if err := os.WriteFile(target, []byte("p"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(target, 0o644); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(d.Secrets, "link.key")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d.Secrets, 0o755); err != nil {
			t.Fatal(err)
		}
		var paths []string
		for _, e := range unjoin(d.Check()) {
			var ce *envdirs.CheckError
			if errors.As(e, &ce) && errors.Is(e, envdirs.ErrInsecure) {
				paths = append(paths, ce.Path)
			}
		}
		if diff := cmp.Diff([]string{d.Secrets, link}, paths); diff != "" {
			t.Errorf("insecure paths (-want +got):\n%s", diff)
		}
	})
	t.Run("group-writable secrets dir and file", func(t *testing.T) {
		d := layout(t)
		if err := d.Ensure(); err != nil {
			t.Fatal(err)
		}
		shared := filepath.Join(d.Secrets, "shared.key") // group-readable: allowed
		writable := filepath.Join(d.Secrets, "writable.key")
		for path, mode := range map[string]fs.FileMode{shared: 0o640, writable: 0o660} {
			if err := os.WriteFile(path, []byte("k"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(d.Secrets, 0o770); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range unjoin(d.Check()) {
			var ce *envdirs.CheckError
			if errors.As(e, &ce) && errors.Is(e, envdirs.ErrInsecure) {
				got = append(got, ce.Fix)
			}
		}
		if diff := cmp.Diff([]string{"chmod 700 " + d.Secrets, "chmod 600 " + writable}, got); diff != "" {
			t.Errorf("fixes (-want +got):\n%s", diff)
		}
	})
	t.Run("missing secrets dir is fine", func(t *testing.T) {
		d := layout(t)
		d.Runtime = ""
		if err := d.Check(); err != nil {
			t.Errorf("Check = %v, want nil", err)
		}
	})
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

func TestCreateTemp(t *testing.T) {
	d := layout(t)
	f, err := d.CreateTemp("sample-*.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if filepath.Dir(f.Name()) != d.Temp || !strings.HasPrefix(filepath.Base(f.Name()), "e-sample-") ||
		!strings.HasSuffix(f.Name(), ".bin") {
		t.Errorf("name %s, want %s/e-sample-*.bin", f.Name(), d.Temp)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %#o, want 0600", fi.Mode().Perm())
	}
	if _, err := d.CreateTemp("a/b*"); err == nil {
		t.Error("CreateTemp with a separator in the pattern: want an error")
	}
}

func TestLogValue(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	log.Info("dirs", "dirs", envdirs.Dirs{Home: "/e", Runtime: "/e/run", Scanner: "/e/bin/scan"})
	want := "level=INFO msg=dirs dirs.home=/e dirs.runtime=/e/run dirs.scanner=/e/bin/scan\n"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("log line (-want +got):\n%s", diff)
	}
}
