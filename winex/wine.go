package winex

import (
	"bytes"
	"cmp"
	"encoding/gob"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

var (
	// ErrNoWine reports that no Wine loader (or wineserver) was found.
	ErrNoWine = errors.New("winex: wine not found")
	// ErrPrefix reports an unusable WINEPREFIX: missing, not initialised, not
	// a directory or not owned by the current user.
	ErrPrefix = errors.New("winex: unusable wine prefix")
	// ErrServer reports a wineserver that could not be started or stopped.
	ErrServer = errors.New("winex: wineserver")
	// ErrServerRunning reports that another persistent wineserver already
	// serves the prefix, so StartServer cannot start its own.
	ErrServerRunning = errors.New("winex: a wineserver already runs for this prefix")
)

// Defaults applied by Environ when the fields are empty.
const (
	DefaultDebug  = "-all"    // WINEDEBUG: no "fixme" noise, no wine32 hint
	DefaultLocale = "C.UTF-8" // LANG and LC_ALL: Unix file names in UTF-8
	DefaultTZ     = "UTC"     // TZ when the environment has none
)

// Wine describes one Wine installation and prefix. Set the fields (or let
// Discover do it) before the first use; the methods are then safe for
// concurrent use. Do not copy a Wine after first use.
type Wine struct {
	Loader  string // the wine command: WINELOADER, or wine on PATH
	Server  string // wineserver: WINESERVER, beside the loader, or on PATH
	PathCmd string // winepath: WINEPATH_CMD, beside the loader, or on PATH; optional
	Prefix  string // WINEPREFIX, absolute; default $HOME/.wine
	Debug   string // WINEDEBUG; "" means DefaultDebug
	Locale  string // LANG and LC_ALL; "" means DefaultLocale
	TZ      string // TZ; "" means DefaultTZ
	// Env holds extra KEY=value variables for every Wine process (after the
	// above), for instance WINEDLLOVERRIDES.
	Env []string

	mu            sync.Mutex
	serverStarted bool // by StartServer, until StopServer
}

// Discover finds Wine from the variables getenv returns (nil means
// os.Getenv): the loader from WINELOADER or the first of wine, wine64,
// wine-stable on PATH (Debian has no wine64 on PATH); wineserver from
// WINESERVER, else beside the loader, else on PATH; winepath likewise from
// WINEPATH_CMD; the prefix from WINEPREFIX (made absolute) or $HOME/.wine;
// WINEDEBUG (default "-all") and TZ (default UTC). It starts no process.
//
// On Windows, Discover returns (nil, nil): programs run directly, and a nil
// *Wine in Cmd.Wine (or Wine.Command on a nil *Wine) means exactly that.
// Elsewhere, a missing loader gives an error wrapping ErrNoWine.
func Discover(getenv func(string) string) (*Wine, error) {
	if runtime.GOOS == "windows" {
		return nil, nil
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	path := getenv("PATH")
	w := &Wine{Debug: getenv("WINEDEBUG"), TZ: getenv("TZ")}

	var err error
	if v := getenv("WINELOADER"); v != "" {
		if w.Loader, err = findExecutable(v, path); err != nil {
			return nil, fmt.Errorf("%w: WINELOADER=%s: %w", ErrNoWine, v, err)
		}
	} else {
		for _, name := range []string{"wine", "wine64", "wine-stable"} {
			if w.Loader, err = lookPath(name, path); err == nil {
				break
			}
		}
		if w.Loader == "" {
			return nil, fmt.Errorf("%w: no wine, wine64 or wine-stable on PATH", ErrNoWine)
		}
	}
	if w.Server, err = companion(getenv("WINESERVER"), "wineserver", w.Loader, path); err != nil {
		return nil, fmt.Errorf("%w: WINESERVER: %w", ErrNoWine, err)
	}
	if w.PathCmd, err = companion(getenv("WINEPATH_CMD"), "winepath", w.Loader, path); err != nil {
		return nil, fmt.Errorf("%w: WINEPATH_CMD: %w", ErrNoWine, err)
	}

	w.Prefix = getenv("WINEPREFIX")
	if w.Prefix == "" {
		home := getenv("HOME")
		if home == "" {
			return nil, fmt.Errorf("%w: neither WINEPREFIX nor HOME is set", ErrPrefix)
		}
		w.Prefix = filepath.Join(home, ".wine")
	}
	if w.Prefix, err = filepath.Abs(w.Prefix); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPrefix, err)
	}
	return w, nil
}

// companion finds a Wine tool: the explicit value, else name beside the
// loader, else name on PATH; "" (no error) when absent and not explicit.
func companion(explicit, name, loader, path string) (string, error) {
	if explicit != "" {
		return findExecutable(explicit, path)
	}
	if p := filepath.Join(filepath.Dir(loader), name); isExecutable(p) {
		return p, nil
	}
	if p, err := lookPath(name, path); err == nil {
		return p, nil
	}
	return "", nil
}

// findExecutable accepts a path (with a separator) or a name to look up.
func findExecutable(v, path string) (string, error) {
	if filepath.Base(v) != v {
		abs, err := filepath.Abs(v)
		if err != nil {
			return "", err
		}
		if !isExecutable(abs) {
			return "", fmt.Errorf("%s: not an executable file", abs)
		}
		return abs, nil
	}
	return lookPath(v, path)
}

// lookPath is exec.LookPath over the given PATH value; relative entries are
// ignored.
func lookPath(name, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found on PATH", name)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// Environ returns the variables that make Wine behave, in the KEY=value form
// of os.Environ: WINEPREFIX, WINEDEBUG, LANG and LC_ALL (a UTF-8 locale, or
// non-ASCII file names are mangled), TZ, WINESERVER (so that a server started
// on demand is the same binary as StartServer's), then Env. Run adds them after
// the process environment.
func (w *Wine) Environ() []string {
	locale := cmp.Or(w.Locale, DefaultLocale)
	env := []string{
		"WINEPREFIX=" + w.Prefix,
		"WINEDEBUG=" + cmp.Or(w.Debug, DefaultDebug),
		"LANG=" + locale,
		"LC_ALL=" + locale,
		"TZ=" + cmp.Or(w.TZ, DefaultTZ),
	}
	if w.Server != "" {
		env = append(env, "WINESERVER="+w.Server)
	}
	return append(env, w.Env...)
}

// checkPrefix verifies that the prefix is an absolute directory owned by us
// and, when initialised is set, that wineboot has populated it.
func (w *Wine) checkPrefix(initialised bool) error {
	if w.Prefix == "" || !filepath.IsAbs(w.Prefix) {
		return fmt.Errorf("%w: %q is not an absolute path", ErrPrefix, w.Prefix)
	}
	fi, err := os.Stat(w.Prefix)
	if errors.Is(err, fs.ErrNotExist) && !initialised {
		return nil // wineboot creates it
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s does not exist (call InitPrefix)", ErrPrefix, w.Prefix)
		}
		return fmt.Errorf("%w: %w", ErrPrefix, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrPrefix, w.Prefix)
	}
	if uid, ok := fileOwner(fi); ok && uid != os.Getuid() {
		return fmt.Errorf("%w: %s is owned by uid %d, not by us (uid %d): Wine refuses it", ErrPrefix, w.Prefix, uid, os.Getuid())
	}
	if initialised && !w.initialised() {
		return fmt.Errorf("%w: %s is not initialised (call InitPrefix)", ErrPrefix, w.Prefix)
	}
	return nil
}

func (w *Wine) initialised() bool {
	_, err := os.Stat(filepath.Join(w.Prefix, "system.reg"))
	return err == nil
}

// wineConfig is what a Wine is, without the state of a server it started.
type wineConfig struct {
	Loader, Server, PathCmd, Prefix, Debug, Locale, TZ string
	Env                                                []string
}

// GobEncode encodes w's configuration: a Wine decoded elsewhere (in another
// process) runs programs in the same prefix, but does not own the
// persistent server w may have started (StopServer there stops nothing it
// started).
func (w *Wine) GobEncode() ([]byte, error) {
	var buf bytes.Buffer
	err := gob.NewEncoder(&buf).Encode(wineConfig{w.Loader, w.Server, w.PathCmd, w.Prefix, w.Debug, w.Locale, w.TZ, w.Env})
	return buf.Bytes(), err
}

// GobDecode sets w's configuration from GobEncode's output.
func (w *Wine) GobDecode(data []byte) error {
	var c wineConfig
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&c); err != nil {
		return err
	}
	w.Loader, w.Server, w.PathCmd, w.Prefix, w.Debug, w.Locale, w.TZ, w.Env = c.Loader, c.Server, c.PathCmd, c.Prefix, c.Debug, c.Locale, c.TZ, c.Env
	return nil
}
