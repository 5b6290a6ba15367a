package envdirs

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Names of the environment variables Resolve reads.
const (
	EnvHome       = "PSENGINE_HOME"
	EnvBin        = "PSENGINE_BIN_DIR"
	EnvLib        = "PSENGINE_LIB_DIR"
	EnvSecrets    = "PSENGINE_SECRETS_DIR"
	EnvConfig     = "PSENGINE_CONFIG_DIR"
	EnvCache      = "PSENGINE_CACHE_DIR"
	EnvData       = "PSENGINE_DATA_DIR"
	EnvState      = "PSENGINE_STATE_DIR"
	EnvRuntime    = "PSENGINE_RUNTIME_DIR"
	EnvScanner    = "PSENGINE_SCANNER"
	EnvUpdater    = "PSENGINE_UPDATER"
	EnvTempDir    = "TMPDIR"
	EnvTempPrefix = "TMPPREFIX"
)

var (
	// ErrEngine reports an engine name that is not a single path element.
	ErrEngine = errors.New("envdirs: invalid engine name")
	// ErrNoHome reports that neither PSENGINE_HOME nor HOME is set, so no
	// default directory can be computed.
	ErrNoHome = errors.New("envdirs: no home directory (set PSENGINE_HOME or HOME)")
	// ErrInvalid reports an unusable environment value; the error is a *VarError.
	ErrInvalid = errors.New("envdirs: invalid value")
)

// VarError reports an environment variable whose value cannot be used.
type VarError struct {
	Name, Value, Reason string
}

func (e *VarError) Error() string {
	return fmt.Sprintf("envdirs: %s=%q: %s", e.Name, e.Value, e.Reason)
}

// Unwrap returns ErrInvalid.
func (e *VarError) Unwrap() error { return ErrInvalid }

// Dirs holds an engine's resolved directories. Every directory is absolute and
// clean; Scanner and Updater are absolute paths or "" when unset. The zero
// value has no directories: Ensure and Check then do nothing.
type Dirs struct {
	Home, Bin, Lib, Secrets, Config, Cache, Data, State, Runtime string

	// Temp is the scratch directory (TMPDIR, else /tmp as os.TempDir) and
	// TempPrefix the name prefix of scratch files (TMPPREFIX, else "ENGINE-").
	Temp, TempPrefix string

	// Scanner and Updater are the well-known executables, "" when unset.
	Scanner, Updater string
}

// FromEnv is Resolve(engine, os.Getenv).
func FromEnv(engine string) (Dirs, []string, error) {
	return Resolve(engine, os.Getenv)
}

// Resolve computes the directories of the named engine from the variables
// getenv returns (nil means os.Getenv); see the package documentation for the
// variables and defaults. engine must be a single path element such as
// "clamav". Resolve touches no file: it only reads the working directory when
// a relative value needs it. The warnings are meant for the log (for instance
// a runtime directory that falls back to the temp directory); errors wrap
// ErrEngine, ErrNoHome or ErrInvalid.
func Resolve(engine string, getenv func(string) string) (Dirs, []string, error) {
	if err := checkEngine(engine); err != nil {
		return Dirs{}, nil, err
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	r := resolver{engine: engine, getenv: getenv}
	d, err := r.resolve()
	return d, r.warnings, err
}

type resolver struct {
	engine   string
	getenv   func(string) string
	warnings []string
	cwd      string
}

func (r *resolver) warnf(format string, args ...any) {
	r.warnings = append(r.warnings, fmt.Sprintf(format, args...))
}

// value returns the variable's value, refusing a NUL byte.
func (r *resolver) value(name string) (string, error) {
	v := r.getenv(name)
	if strings.IndexByte(v, 0) >= 0 {
		return "", &VarError{Name: name, Value: v, Reason: "contains a NUL byte"}
	}
	return v, nil
}

// absolute makes p absolute against base, or against the working directory
// when base is "".
func (r *resolver) absolute(p, base string) (string, error) {
	if filepath.IsAbs(p) {
		return filepath.Clean(p), nil
	}
	if base == "" {
		if r.cwd == "" {
			wd, err := os.Getwd()
			if err != nil {
				return "", fmt.Errorf("envdirs: working directory for %q: %w", p, err)
			}
			r.cwd = wd
		}
		base = r.cwd
	}
	return filepath.Join(base, p), nil
}

// xdg returns the engine's directory in an XDG base directory: the variable
// when it holds an absolute path, else home/fallback. The spec says relative
// values are invalid and must be ignored.
func (r *resolver) xdg(name, fallback string) (string, error) {
	v, err := r.value(name)
	if err != nil {
		return "", err
	}
	if v != "" {
		if filepath.IsAbs(v) {
			return filepath.Join(v, r.engine), nil
		}
		r.warnf("%s=%q is not absolute: ignored as the XDG spec requires", name, v)
	}
	home, err := r.userHome()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, fallback, r.engine), nil
}

func (r *resolver) userHome() (string, error) {
	home := r.getenv("HOME")
	if home == "" && runtime.GOOS == "windows" {
		home = r.getenv("USERPROFILE")
	}
	if home == "" {
		return "", ErrNoHome
	}
	if !filepath.IsAbs(home) {
		return "", &VarError{Name: "HOME", Value: home, Reason: "not an absolute path"}
	}
	return filepath.Clean(home), nil
}

func (r *resolver) resolve() (Dirs, error) {
	var d Dirs
	var err error
	if d.Temp, d.TempPrefix, err = r.temp(); err != nil {
		return Dirs{}, err
	}

	// defaults maps each directory to its default when its variable is unset.
	var defaults map[string]string
	home, err := r.value(EnvHome)
	if err != nil {
		return Dirs{}, err
	}
	if home != "" {
		if d.Home, err = r.absolute(home, ""); err != nil {
			return Dirs{}, err
		}
		defaults = map[string]string{
			EnvBin: "bin", EnvLib: "lib", EnvSecrets: "secrets", EnvConfig: "etc",
			EnvCache: "cache", EnvData: "share", EnvState: "state", EnvRuntime: "run",
		}
		for k, v := range defaults {
			defaults[k] = filepath.Join(d.Home, v)
		}
	} else {
		if defaults, err = r.xdgDefaults(); err != nil {
			return Dirs{}, err
		}
		d.Home = defaults[EnvData]
	}

	for _, f := range []struct {
		name string
		dst  *string
	}{
		{EnvBin, &d.Bin}, {EnvLib, &d.Lib}, {EnvConfig, &d.Config}, {EnvSecrets, &d.Secrets},
		{EnvCache, &d.Cache}, {EnvData, &d.Data}, {EnvState, &d.State}, {EnvRuntime, &d.Runtime},
	} {
		v, err := r.value(f.name)
		if err != nil {
			return Dirs{}, err
		}
		if v == "" {
			*f.dst = defaults[f.name]
			continue
		}
		if *f.dst, err = r.absolute(v, d.Home); err != nil {
			return Dirs{}, err
		}
	}

	for _, f := range []struct {
		name string
		dst  *string
	}{{EnvScanner, &d.Scanner}, {EnvUpdater, &d.Updater}} {
		v, err := r.value(f.name)
		if err != nil {
			return Dirs{}, err
		}
		if v != "" {
			*f.dst = d.Executable(v)
		}
	}
	return d, nil
}

// xdgDefaults computes the per-engine XDG defaults, keyed by variable name.
// The data directory is always needed (it is the home); the others are looked
// up only when their PSENGINE_*_DIR is unset.
func (r *resolver) xdgDefaults() (map[string]string, error) {
	need := func(name string) bool {
		v, _ := r.value(name)
		return v == ""
	}
	m := map[string]string{}
	var err error
	// The data directory is the engine's home: bin and lib live under it.
	if m[EnvData], err = r.xdg("XDG_DATA_HOME", filepath.Join(".local", "share")); err != nil {
		return nil, err
	}
	m[EnvBin] = filepath.Join(m[EnvData], "bin")
	m[EnvLib] = filepath.Join(m[EnvData], "lib")
	if need(EnvConfig) || need(EnvSecrets) {
		if m[EnvConfig], err = r.xdg("XDG_CONFIG_HOME", ".config"); err != nil {
			return nil, err
		}
		m[EnvSecrets] = filepath.Join(m[EnvConfig], "secrets")
	}
	if need(EnvCache) {
		if m[EnvCache], err = r.xdg("XDG_CACHE_HOME", ".cache"); err != nil {
			return nil, err
		}
	}
	if need(EnvState) {
		if m[EnvState], err = r.xdg("XDG_STATE_HOME", filepath.Join(".local", "state")); err != nil {
			return nil, err
		}
	}
	if need(EnvRuntime) {
		rt, err := r.value("XDG_RUNTIME_DIR")
		if err != nil {
			return nil, err
		}
		if rt != "" && !filepath.IsAbs(rt) {
			r.warnf("XDG_RUNTIME_DIR=%q is not absolute: ignored as the XDG spec requires", rt)
			rt = ""
		}
		if rt != "" {
			m[EnvRuntime] = filepath.Join(filepath.Clean(rt), r.engine)
		} else {
			tmp, _, err := r.temp()
			if err != nil {
				return nil, err
			}
			m[EnvRuntime] = filepath.Join(tmp, fmt.Sprintf("%s-runtime-%d", r.engine, os.Getuid()))
			r.warnf("neither %s nor XDG_RUNTIME_DIR is set: runtime directory falls back to %s", EnvRuntime, m[EnvRuntime])
		}
	}
	return m, nil
}

// temp returns the scratch directory and file-name prefix. TMPPREFIX may be a
// plain prefix ("scan-") or, as in zsh, a path prefix ("/var/tmp/scan-"):
// then its directory replaces TMPDIR.
func (r *resolver) temp() (dir, prefix string, err error) {
	dir, err = r.value(EnvTempDir)
	if err != nil {
		return "", "", err
	}
	if dir == "" {
		dir = os.TempDir()
		if runtime.GOOS != "windows" && runtime.GOOS != "android" && runtime.GOOS != "ios" {
			dir = "/tmp" // os.TempDir without TMPDIR; getenv, not the process, decides.
		}
	}
	if dir, err = r.absolute(dir, ""); err != nil {
		return "", "", err
	}
	prefix, err = r.value(EnvTempPrefix)
	if err != nil {
		return "", "", err
	}
	if i := strings.LastIndexAny(prefix, `/`+string(filepath.Separator)); i >= 0 {
		d := prefix[:i+1]
		if dir, err = r.absolute(d, ""); err != nil {
			return "", "", err
		}
		prefix = prefix[i+1:]
	}
	return dir, cmp.Or(prefix, r.engine+"-"), nil
}

func checkEngine(engine string) error {
	switch {
	case engine == "", engine == ".", engine == "..":
	case strings.ContainsAny(engine, "/\\\x00"):
	case len(engine) > 255:
	default:
		return nil
	}
	return fmt.Errorf("%w: %q must be a single path element", ErrEngine, engine)
}

// Executable returns name as an absolute path: unchanged when absolute, else
// joined to the bin directory.
func (d Dirs) Executable(name string) string {
	if filepath.IsAbs(name) {
		return filepath.Clean(name)
	}
	return filepath.Join(d.Bin, name)
}

// LogValue groups the non-empty paths under short keys, so that
// slog.Any("dirs", d) prints dirs.home=... dirs.bin=... in this order.
func (d Dirs) LogValue() slog.Value {
	var attrs []slog.Attr
	for _, f := range []struct{ key, val string }{
		{"home", d.Home}, {"bin", d.Bin}, {"lib", d.Lib}, {"secrets", d.Secrets},
		{"config", d.Config}, {"cache", d.Cache}, {"data", d.Data}, {"state", d.State},
		{"runtime", d.Runtime}, {"temp", d.Temp}, {"temp_prefix", d.TempPrefix},
		{"scanner", d.Scanner}, {"updater", d.Updater},
	} {
		if f.val != "" {
			attrs = append(attrs, slog.String(f.key, f.val))
		}
	}
	return slog.GroupValue(attrs...)
}
