// Package engine is the winescan example engine: its scanner is a real
// Windows program run under Wine. Wine's own find.exe searches the artifact
// for the EICAR marker, standing in for a Windows anti-virus console scanner
// with everything such a scanner brings: an exit code that is the verdict,
// output in code page 1252 with CRLF line endings, and paths printed the
// Windows way (upper-cased, Z:\...).
//
// Answers:
//
//   - find.exe finds the marker (exit code 0): malicious, family
//     "EICAR-Test-File", not heuristic, confidence "very likely" (ICD 203:
//     85): the marker alone is enough, so a document quoting it is flagged
//     too;
//   - find.exe does not find it (exit code 1): benign, confidence "very
//     unlikely" (15), so the bid is near the minimum. This is what an
//     anti-virus console scanner answers for a file it scanned and found
//     nothing in; a one-string search knows little, hence the low
//     confidence. (The EICAR example answers unknown instead: it has no
//     scanner run to report on.)
//   - anything else (find.exe could not open the file, another exit code,
//     output of an unexpected shape, Wine missing): an error, which the
//     engine answers unknown and reports to its error hooks.
//
// find.exe reads text lines and a line ends at a NUL byte for it, so a
// marker that follows a NUL byte on the same line is not found: a limit of
// the stand-in scanner, kept as it is.
//
// # Wine
//
// The engine's Wine prefix is WINEPREFIX when set, else "wineprefix" under
// the engine's data directory (envdirs: PSENGINE_DATA_DIR, or
// $XDG_DATA_HOME/ENGINE). Engine setup initialises it when needed (10-30 s,
// once), starts a persistent wineserver so that each scan costs about 0.1 s
// instead of 1 s, and reads the Windows version from `cmd /c ver` for the
// head (vendor_version). Teardown stops the server. When another process's
// persistent server already serves the prefix, the engine uses it and leaves
// it running. Workers run find.exe concurrently on the one prefix.
//
// find.exe gets the artifact's file (Artifact.Path: the local file itself,
// or a temporary copy of fetched content) as its Windows path (Z:\...);
// a name Windows cannot take (a ':' or '?') or open (a trailing dot, a
// device name such as CON) is scanned through a temporary copy with a plain
// name. The path find.exe prints back is mapped to a Unix path to check that
// the report is about the artifact.
//
// An operator who scans often keeps a persistent server running for the
// prefix (`WINEPREFIX=... wineserver -p`): engines started meanwhile find it
// at once and use it, skipping the second or so a server takes to start,
// and leave it running when they stop.
//
// Commands: `scan_file PATH` scans one file and prints the analysis with what
// find.exe said; `ver` prints the Windows version; `wineserver-kill` stops
// the wineserver serving the engine's prefix (an operator's persistent one,
// or one an engine killed with SIGKILL left behind) and every Wine program
// still running in it.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/bid"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/winex"
)

// The engine's head.
const (
	Product = "winescan-example"
	Version = "1.0.0"
)

// Family is the metadata.malware_family of a file holding the marker.
const Family = "EICAR-Test-File"

// Confidences of the two answers (see the package documentation).
var (
	foundConfidence, _    = bid.VeryLikely.Confidence()
	notFoundConfidence, _ = bid.VeryUnlikely.Confidence()
)

// maxFindOutput caps what is kept of find.exe's output: the header comes
// first, and matching lines (the artifact's own bytes) are only counted.
const maxFindOutput = 64 << 10

// Scanner is the winescan engine. The zero value reads its Wine settings from
// the process environment.
type Scanner struct {
	// Getenv reads the Wine settings: WINEPREFIX, WINELOADER, WINESERVER,
	// WINEPATH_CMD, WINEDEBUG, TZ. nil means os.Getenv.
	Getenv func(string) string
}

var (
	_ psengine.Scanner        = Scanner{}
	_ psengine.EngineSetup    = Scanner{}
	_ psengine.EngineTeardown = Scanner{}
	_ psengine.Describer      = Scanner{}
	_ psengine.Acceptor       = Scanner{}
	_ psengine.Commander      = Scanner{}
)

// session is what engine setup prepares, read-only from then on and shared
// by every worker.
// Its fields are exported so that it reaches worker child processes (the
// process backend) as it is.
type session struct {
	Wine *winex.Wine
	// SharedServer: a persistent wineserver this engine did not start serves
	// the prefix; teardown leaves it running.
	SharedServer  bool
	VendorVersion string
}

var sessionKey = psengine.NewKey[*session]("winescan.session")

// discover finds Wine and chooses the prefix: WINEPREFIX when set, else
// dataDir/wineprefix, else (no data directory: a zero Env) Wine's default.
func (s Scanner) discover(dataDir string) (*winex.Wine, error) {
	getenv := s.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	w, err := winex.Discover(getenv)
	if err != nil {
		return nil, err
	}
	if w == nil {
		return nil, fmt.Errorf("%w: winescan runs find.exe under Wine, which Windows does not need", winex.ErrNoWine)
	}
	if getenv("WINEPREFIX") == "" && dataDir != "" {
		w.Prefix = filepath.Join(dataDir, "wineprefix")
	}
	return w, nil
}

// sessionFor returns the session setup stored in env or, for an Env that
// went through no setup (a test, a debugger), one discovered now: its prefix
// must already be initialised, and no persistent server is started (each run
// then costs about a second).
func (s Scanner) sessionFor(env psengine.Env) (*session, error) {
	if sess, ok := sessionKey.Value(env); ok {
		return sess, nil
	}
	w, err := s.discover(env.Dirs().Data)
	if err != nil {
		return nil, err
	}
	return &session{Wine: w}, nil
}

// SetupEngine initialises the prefix when needed (slow the first time),
// starts a persistent wineserver and reads the Windows version. When it
// fails after starting the server, it stops it.
func (s Scanner) SetupEngine(ctx context.Context, env psengine.Env) (psengine.Env, error) {
	log := env.Logger()
	w, err := s.discover(env.Dirs().Data)
	if err != nil {
		return env, err
	}
	// InitPrefix returns at once for a prefix that has its system.reg.
	if _, err := os.Stat(filepath.Join(w.Prefix, "system.reg")); err != nil {
		log.Info("creating the wine prefix: 10-30 s, the first time only", "prefix", w.Prefix)
	}
	start := time.Now()
	if err := w.InitPrefix(ctx); err != nil {
		return env, err
	}
	log.Info("wine prefix ready", "prefix", w.Prefix, "took", time.Since(start).Round(time.Millisecond))

	// A server started, even if its warm-up failed, is stopped on failure.
	fail := func(err error) (psengine.Env, error) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		return env, errors.Join(err, w.StopServer(sctx))
	}
	sess := &session{Wine: w}
	start = time.Now()
	switch err := w.StartServer(ctx); {
	case errors.Is(err, winex.ErrServerRunning):
		sess.SharedServer = true
		info, _ := w.RunningServer()
		log.Info("using the persistent wineserver already serving the prefix", "prefix", w.Prefix, "pid", info.PID,
			"took", time.Since(start).Round(time.Millisecond))
	case err != nil:
		return fail(err)
	default:
		log.Info("persistent wineserver started", "prefix", w.Prefix, "took", time.Since(start).Round(time.Millisecond))
	}
	if sess.VendorVersion, _, err = windowsVersion(ctx, w); err != nil {
		return fail(err)
	}
	return sessionKey.With(env, sess), nil
}

// TeardownEngine stops the persistent wineserver setup started, which also
// ends any Wine program still running in the prefix.
func (s Scanner) TeardownEngine(ctx context.Context, env psengine.Env) error {
	sess, ok := sessionKey.Value(env)
	if !ok || sess.SharedServer {
		return nil
	}
	start := time.Now()
	if err := sess.Wine.StopServer(ctx); err != nil {
		return err
	}
	env.Logger().Info("persistent wineserver stopped", "prefix", sess.Wine.Prefix, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Describe is the engine's head: the Windows version Wine reports is the
// vendor_version. The operating_system stays the host's (the engine sets it):
// PolySwarm's environment says where the engine runs, which is Linux; the
// Windows the scanner sees is what vendor_version states.
func (s Scanner) Describe(ctx context.Context, env psengine.Env) (psengine.Metadata, error) {
	sess, err := s.sessionFor(env)
	if err != nil {
		return psengine.Metadata{}, err
	}
	v := sess.VendorVersion
	if v == "" {
		if v, _, err = windowsVersion(ctx, sess.Wine); err != nil {
			return psengine.Metadata{}, err
		}
	}
	return psengine.Metadata{
		Product: Product,
		Scanner: psengine.ScannerInfo{Version: Version, VendorVersion: v},
	}, nil
}

// windowsVersion runs `cmd /c ver`: the vendor version and the raw line.
func windowsVersion(ctx context.Context, w *winex.Wine) (version, output string, err error) {
	res, err := winex.Run(ctx, winex.Cmd{Wine: w, Path: "cmd", Args: []string{"/c", "ver"}, Encoding: winex.CP1252})
	if err != nil {
		return "", "", fmt.Errorf("winescan: cmd /c ver: %w", err)
	}
	output = strings.TrimSpace(res.Stdout)
	if res.ExitCode != 0 {
		return "", output, fmt.Errorf("winescan: cmd /c ver: exit code %d: %q", res.ExitCode, head(res.Stdout+res.Stderr))
	}
	version, err = ParseVer(res.Stdout)
	return version, output, err
}

// Accepts file artifacts only: find.exe searches files.
func (Scanner) Accepts(a psengine.Artifact) bool { return a.Type == psengine.FileArtifact }

// Scan runs find.exe on the artifact's file (a.Path: the local file itself,
// or a temporary copy of fetched content).
func (s Scanner) Scan(ctx context.Context, env psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	if a.Type != psengine.FileArtifact {
		return psengine.Analysis{}, fmt.Errorf("%w: winescan scans files, not %q artifacts", psengine.ErrUnsupported, a.Type)
	}
	sess, err := s.sessionFor(env)
	if err != nil {
		return psengine.Analysis{}, err
	}
	path, err := a.Path()
	if err != nil {
		return psengine.Analysis{}, err
	}
	res, err := scanPath(ctx, sess.Wine, env.Dirs(), path)
	if err != nil {
		return psengine.Analysis{}, err
	}
	return Classify(res.Report), nil
}

// Classify turns find.exe's report on the artifact into the analysis.
func Classify(r Report) psengine.Analysis {
	if r.Found {
		return psengine.Analysis{
			Verdict:    psengine.Malicious,
			Confidence: foundConfidence,
			Metadata:   psengine.Metadata{MalwareFamily: Family},
		}
	}
	return psengine.Analysis{Verdict: psengine.Benign, Confidence: notFoundConfidence}
}

// fileScan is one scan of a file, as the scan_file command prints it.
type fileScan struct {
	Path        string            `json:"path"`
	WindowsPath string            `json:"windows_path"`
	Copied      bool              `json:"copied,omitempty"` // find.exe searched a copy: it cannot open the name
	ExitCode    int               `json:"exit_code"`
	Header      string            `json:"find_header"` // the path as find.exe printed it
	Lines       int               `json:"matching_lines"`
	Analysis    psengine.Analysis `json:"analysis"`
	Report      Report            `json:"-"`
}

// scanPath runs find.exe on the regular file at path. A name Windows cannot
// use (ToWindows refuses it: a ':' or '?' in it) or cannot open (find.exe
// says "File not found": a trailing dot, a device name such as CON) is
// scanned through a temporary copy with a plain name.
func scanPath(ctx context.Context, w *winex.Wine, dirs envdirs.Dirs, path string) (fileScan, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileScan{}, err
	}
	if !st.Mode().IsRegular() {
		return fileScan{}, fmt.Errorf("winescan: %s is not a regular file", path)
	}
	win, err := w.ToWindows(path)
	if err == nil {
		res, err := find(ctx, w, path, win)
		if fe, ok := errors.AsType[*FindError](err); !ok || !fe.FileNotFound {
			return res, err
		}
	} else if !errors.Is(err, winex.ErrPath) {
		return fileScan{}, err
	}

	cp, err := copyToTemp(dirs, path)
	if err != nil {
		return fileScan{}, err
	}
	defer os.Remove(cp)
	if win, err = w.ToWindows(cp); err != nil {
		return fileScan{}, err
	}
	res, err := find(ctx, w, cp, win)
	res.Path, res.Copied = path, true
	return res, err
}

// find runs `find MARKER WINPATH` and checks that find.exe's report is about
// the file at unixPath.
func find(ctx context.Context, w *winex.Wine, unixPath, win string) (fileScan, error) {
	cmd := winex.Cmd{
		Wine: w, Path: "find", Args: []string{Marker, win},
		Encoding: winex.CP1252, MaxOutput: maxFindOutput,
		// find.exe prints a header or "File not found" whenever it runs: a
		// failure with no output at all is Wine failing around it (seen
		// once, right after the prefix's wineserver was stopped), and Run
		// runs it once more.
		AlwaysPrints: true,
	}
	res, err := winex.Run(ctx, cmd)
	if err != nil {
		return fileScan{}, fmt.Errorf("winescan: running find.exe: %w", err)
	}
	rep, err := ParseFind(res.ExitCode, res.Stdout)
	if err != nil {
		if fe, ok := errors.AsType[*FindError](err); ok {
			fe.Path, fe.Stderr = win, head(res.Stderr)
			err = findError(fe) // the message was formatted without them
		}
		return fileScan{}, err
	}
	if !sameFile(w, rep.Header, unixPath) && !MatchesFindName(rep.Header, win) {
		return fileScan{}, findError(&FindError{
			Path: win, ExitCode: res.ExitCode,
			Reason: fmt.Sprintf("find.exe reported on another file: %q", rep.Header),
		})
	}
	return fileScan{
		Path: unixPath, WindowsPath: win, ExitCode: rep.ExitCode,
		Header: rep.Header, Lines: rep.Lines, Report: rep,
	}, nil
}

// sameFile reports whether the Windows path find.exe printed maps back to the
// file at unixPath. It does not when find.exe could not print the name in
// code page 1252 (a '?' in place of ☃): MatchesFindName then decides.
func sameFile(w *winex.Wine, header, unixPath string) bool {
	p, err := w.ToUnix(header)
	if err != nil {
		return false
	}
	a, err := os.Stat(p)
	if err != nil {
		return false
	}
	b, err := os.Stat(unixPath)
	return err == nil && os.SameFile(a, b)
}

// copyToTemp copies the file at path to a new temporary file (under the
// engine's temp directory, named with its prefix) and returns its path.
func copyToTemp(dirs envdirs.Dirs, path string) (string, error) {
	src, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer src.Close()
	dst, err := dirs.CreateTemp("find-*.bin")
	if err != nil {
		return "", err
	}
	_, err = io.Copy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst.Name())
		return "", fmt.Errorf("winescan: copying %s for find.exe: %w", path, err)
	}
	return dst.Name(), nil
}

// serverKill is what `commands wineserver-kill` prints.
type serverKill struct {
	Prefix  string   `json:"prefix"`
	Stopped bool     `json:"stopped"` // a server was running, and is gone
	PID     int      `json:"pid,omitempty"`
	Args    []string `json:"args,omitempty"` // the server's arguments (-p: persistent)
}

// Commands exposes `scan_file PATH`, `ver` and `wineserver-kill`.
func (s Scanner) Commands() []psengine.Command {
	return []psengine.Command{
		{
			Name: "wineserver-kill",
			Help: "wineserver-kill: stop the wineserver serving the engine's prefix (a persistent one, whoever started it) and every Wine program running in it",
			Run: func(ctx context.Context, env psengine.Env, args []string) (any, error) {
				if len(args) != 0 {
					return nil, errors.New("wineserver-kill takes no arguments")
				}
				sess, err := s.sessionFor(env)
				if err != nil {
					return nil, err
				}
				info, _ := sess.Wine.RunningServer()
				stopped, err := sess.Wine.KillServer(ctx)
				if err != nil {
					return nil, err
				}
				out := serverKill{Prefix: sess.Wine.Prefix, Stopped: stopped}
				if stopped {
					out.PID, out.Args = info.PID, info.Args
				}
				return out, nil
			},
		},
		{
			Name: "scan_file",
			Help: "scan_file PATH: run find.exe on PATH and print the analysis with what find.exe said",
			Run: func(ctx context.Context, env psengine.Env, args []string) (any, error) {
				if len(args) != 1 {
					return nil, errors.New("scan_file needs exactly one PATH")
				}
				sess, err := s.sessionFor(env)
				if err != nil {
					return nil, err
				}
				res, err := scanPath(ctx, sess.Wine, env.Dirs(), args[0])
				if err != nil {
					return nil, err
				}
				res.Analysis = Classify(res.Report)
				h := env.Head()
				res.Analysis.Metadata.Product, res.Analysis.Metadata.Scanner = h.Product, h.Scanner
				return res, nil
			},
		},
		{
			Name: "ver",
			Help: "ver: print the Windows version Wine reports (cmd /c ver), the engine's vendor_version",
			Run: func(ctx context.Context, env psengine.Env, args []string) (any, error) {
				if len(args) != 0 {
					return nil, errors.New("ver takes no arguments")
				}
				sess, err := s.sessionFor(env)
				if err != nil {
					return nil, err
				}
				v, out, err := windowsVersion(ctx, sess.Wine)
				if err != nil {
					return nil, err
				}
				return map[string]string{"vendor_version": v, "output": out, "prefix": sess.Wine.Prefix}, nil
			},
		},
	}
}
