package envdirs_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/polyswarm/psengine/envdirs"
)

func TestReadSecretFile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("modes are not checked on Windows")
	}
	dir := t.TempDir()
	write := func(t *testing.T, name, content string, mode fs.FileMode) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
		return path
	}
	for _, tt := range []struct {
		name, content string
		mode          fs.FileMode
		want          string
	}{
		{"echoed", "s3cret\n", 0o600, "s3cret"},
		{"crlf", "s3cret\r\n", 0o400, "s3cret"},
		{"no newline", "s3cret", 0o600, "s3cret"},
		{"inner spaces kept", " s3 cret \n", 0o600, " s3 cret "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := envdirs.ReadSecretFile(write(t, tt.name, tt.content, tt.mode))
			if err != nil || string(got) != tt.want {
				t.Errorf("ReadSecretFile = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	for _, mode := range []fs.FileMode{0o640, 0o604, 0o660, 0o602, 0o644} {
		path := write(t, "open", "s3cret\n", mode)
		_, err := envdirs.ReadSecretFile(path)
		var ce *envdirs.CheckError
		if !errors.Is(err, envdirs.ErrInsecure) || !errors.As(err, &ce) || ce.Path != path || ce.Mode != mode ||
			ce.Fix != "chmod 600 "+path {
			t.Errorf("mode %#o: %v, want ErrInsecure naming %s and chmod 600", mode, err, path)
		}
	}
	t.Run("symbolic link to a private file", func(t *testing.T) {
		target := write(t, "target", "linked\n", 0o600)
		link := filepath.Join(dir, "link")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if got, err := envdirs.ReadSecretFile(link); err != nil || string(got) != "linked" {
			t.Errorf("ReadSecretFile(link) = %q, %v", got, err)
		}
	})
	t.Run("empty", func(t *testing.T) {
		if _, err := envdirs.ReadSecretFile(write(t, "empty", "\n", 0o600)); !errors.Is(err, envdirs.ErrEmptySecret) {
			t.Errorf("got %v, want ErrEmptySecret", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		if _, err := envdirs.ReadSecretFile(write(t, "large", strings.Repeat("x", envdirs.MaxSecretSize+1), 0o600)); err == nil ||
			!strings.Contains(err.Error(), "more than") {
			t.Errorf("got %v, want a size error", err)
		}
	})
	t.Run("a directory", func(t *testing.T) {
		if _, err := envdirs.ReadSecretFile(dir); !errors.Is(err, envdirs.ErrNotRegular) {
			t.Errorf("got %v, want ErrNotRegular", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		if _, err := envdirs.ReadSecretFile(filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("got %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("in a directory others can write", func(t *testing.T) {
		open := filepath.Join(t.TempDir(), "shared dir")
		if err := os.Mkdir(open, 0o700); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(open, "secret")
		if err := os.WriteFile(path, []byte("s"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(open, 0o777); err != nil {
			t.Fatal(err)
		}
		_, err := envdirs.ReadSecretFile(path)
		var ce *envdirs.CheckError
		if !errors.As(err, &ce) || !errors.Is(err, envdirs.ErrInsecure) || ce.Fix != "chmod go-w '"+open+"'" {
			t.Errorf("got %v, want ErrInsecure with the fix chmod go-w '%s'", err, open)
		}
		// The sticky bit (as /tmp) keeps others from replacing the file.
		if err := os.Chmod(open, 0o777|fs.ModeSticky); err != nil {
			t.Fatal(err)
		}
		if got, err := envdirs.ReadSecretFile(path); err != nil || string(got) != "s" {
			t.Errorf("in a sticky directory: %q, %v; want the secret", got, err)
		}
	})
	t.Run("owned by someone else", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("needs root to give a file away")
		}
		path := write(t, "theirs", "s\n", 0o600)
		if err := os.Chown(path, 4321, 4321); err != nil {
			t.Fatal(err)
		}
		_, err := envdirs.ReadSecretFile(path)
		var ce *envdirs.CheckError
		if !errors.As(err, &ce) || !errors.Is(err, envdirs.ErrInsecure) || !strings.Contains(ce.Problem, "uid 4321") {
			t.Errorf("got %v, want ErrInsecure naming uid 4321", err)
		}
	})
}
