// Package engine is the ClamAV example engine: it answers bounties by
// having a clamd daemon, which may run on another machine, scan each
// artifact, and turning clamd's reply into an analysis.
//
// # Transfer
//
// On a unix socket clamd is passed a file descriptor (FILDES, SCM_RIGHTS)
// and reads the content itself: the artifact's own file when it has one (a
// local file, or the temp file large content spilled to), else a memory
// file (memfd; on systems without it, the artifact's temp file). Over TCP,
// or with Scanner.Stream, the content is streamed (INSTREAM). Passing the
// descriptor costs clamd neither the copy through the socket nor the temp
// file it spools a stream to.
//
// # Connections
//
// clamd's address is unix:/path/clamd.sock or tcp:host:port (Scanner.Address,
// CLAMD_ADDRESS in the example program). Each worker dials one connection at
// its setup and keeps it (a clamd IDSESSION) for all its scans; a connection
// clamd dropped (a restart, the size-limit reply, one of its timeouts) is dialled again
// by the next scan, which retries once on the new connection. The worker's
// connection lives in the worker's Env (see WithSession), so Scan is also
// callable with an Env a test prepared, or with a zero Env: it then uses a
// connection of its own for the one scan.
//
// # Answers
//
//   - FOUND: malicious, the detection name as malware_family, confidence
//     "almost certain" (0.95); a heuristic detection (a name with a
//     Heuristics component, such as Heuristics.Encrypted.Zip) sets
//     metadata.heuristic and has confidence "likely" (0.7);
//   - OK: benign at a low bid (confidence 0.15): clamd knowing no
//     signature for a file is weak evidence;
//   - "INSTREAM size limit exceeded" (a streamed artifact over clamd's
//     StreamMaxLength, which binds streams only): the SKIPPED special
//     result, with the reason in metadata.error;
//   - clamd unreachable or lost during the scan, or any other ERROR reply:
//     an error, which the engine answers unknown and reports to its error
//     hooks.
//
// Each answer carries clamd's versions (vendor_version 1.4.6,
// signatures_version the database version when clamd reports one), from
// VERSION: the engine's head (Describe) at start, and each worker's
// connection afterwards, so answers stay versioned when clamd was down at
// start or its database changed.
//
// # Operation
//
// Update (psengine.Updater; `clamav update`, `--update-interval`) asks
// clamd to RELOAD its databases and reads the new VERSION for the head and
// the answers; given clamd's DatabaseDirectory (Scanner.DatabaseDir), it
// reloads only when the files changed, fails on a database ClamAV cannot
// load, naming the file, and waits for the new version only as long as
// the reload takes. CheckHealth (psengine.HealthChecker, /readyz) is clamd
// answering PING: the engine starts and runs while clamd is down, answering
// unknown, and is ready once clamd answers.
package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/bid"
	"github.com/polyswarm/psengine/examples/clamav/clamd"
)

// DefaultAddress is where Debian's clamd listens.
const DefaultAddress = "unix:/var/run/clamav/clamd.ctl"

// Product and Version are the engine's metadata.product and
// metadata.scanner.version.
const (
	Product = "clamav"
	Version = "1.0.0"
)

// Confidences of the answers (see the package doc).
var (
	FoundConfidence, _     = bid.AlmostCertain.Confidence()
	HeuristicConfidence, _ = bid.Likely.Confidence()
	CleanConfidence, _     = bid.VeryUnlikely.Confidence()
)

// describeTimeout bounds the VERSION asked at start.
const describeTimeout = 10 * time.Second

// Scanner is the ClamAV engine. The zero value talks to DefaultAddress.
type Scanner struct {
	// Address of clamd: unix:PATH or tcp:HOST:PORT; "" means DefaultAddress.
	Address string
	// DatabaseDir is clamd's DatabaseDirectory, when this process can read
	// it: Update then reloads only when its files changed, checks them
	// first, and waits for the new version (see Update). "" leaves Update
	// blind to the files.
	DatabaseDir string
	// Clamscan is the clamscan program that checks changed database files
	// before a reload; "" finds clamscan on PATH.
	Clamscan string
	// ReloadWait bounds how long Update waits for clamd's VERSION to name
	// a new database version after RELOAD; 0 means DefaultReloadWait.
	ReloadWait time.Duration
	// Stream streams every artifact (INSTREAM) even on a unix socket,
	// where the engine otherwise passes clamd a descriptor of the file
	// (FILDES): for a clamd built without descriptor passing.
	Stream bool
}

var (
	_ psengine.Scanner        = Scanner{}
	_ psengine.EngineSetup    = Scanner{}
	_ psengine.WorkerSetup    = Scanner{}
	_ psengine.WorkerTeardown = Scanner{}
	_ psengine.Describer      = Scanner{}
	_ psengine.Acceptor       = Scanner{}
	_ psengine.Commander      = Scanner{}
)

var (
	addressKey = psengine.NewKey[clamd.Address]("clamav.address")
	sessionKey = psengine.NewKey[*Session]("clamav.session")
)

// WithSession returns env holding s as the worker's clamd session, which
// Scan then uses (SetupWorker does this; so can a test).
func WithSession(env psengine.Env, s *Session) psengine.Env { return sessionKey.With(env, s) }

// SessionOf returns the session env holds, if any.
func SessionOf(env psengine.Env) (*Session, bool) { return sessionKey.Value(env) }

// ParseAddress parses s.Address (DefaultAddress when empty).
func (s Scanner) ParseAddress() (clamd.Address, error) {
	return clamd.ParseAddress(cmp.Or(s.Address, DefaultAddress))
}

// address is the engine's clamd address: set up in env, else parsed.
func (s Scanner) address(env psengine.Env) (clamd.Address, error) {
	if a, ok := addressKey.Value(env); ok {
		return a, nil
	}
	return s.ParseAddress()
}

// SetupEngine checks the address; a bad one stops the engine at start.
func (s Scanner) SetupEngine(_ context.Context, env psengine.Env) (psengine.Env, error) {
	a, err := s.ParseAddress()
	if err != nil {
		return env, err
	}
	return addressKey.With(env, a), nil
}

// Describe asks clamd's VERSION for the engine's head. A clamd that cannot
// be reached at start does not stop the engine (its scans answer unknown
// until it is back): the head then has no versions, and a warning is
// logged.
func (s Scanner) Describe(ctx context.Context, env psengine.Env) (psengine.Metadata, error) {
	m := psengine.Metadata{Product: Product, Scanner: psengine.ScannerInfo{Version: Version}}
	addr, err := s.address(env)
	if err != nil {
		return m, err
	}
	v, ok := reloadedHead(env) // an update asked already
	if !ok {
		ctx, cancel := context.WithTimeout(ctx, describeTimeout)
		defer cancel()
		if v, err = version(ctx, addr); err != nil {
			env.Logger().Warn("clamd unreachable at start; scans answer unknown until it is back", "address", addr.String(), "err", err)
			return m, nil
		}
	}
	m.Scanner.VendorVersion, m.Scanner.SignaturesVersion = v.Engine, v.Signatures
	return m, nil
}

func version(ctx context.Context, addr clamd.Address) (clamd.Version, error) {
	c, err := clamd.Dial(ctx, addr)
	if err != nil {
		return clamd.Version{}, err
	}
	defer c.Close()
	return c.Version(ctx)
}

// SetupWorker dials the worker's connection to clamd. When clamd cannot be
// reached the worker's bounties are answered unknown, and the setup is
// tried again with the next one.
func (s Scanner) SetupWorker(ctx context.Context, env psengine.Env) (psengine.Env, error) {
	addr, err := s.address(env)
	if err != nil {
		return env, err
	}
	sess := s.newSession(addr)
	if err := sess.Connect(ctx); err != nil {
		return env, err
	}
	return WithSession(env, sess), nil
}

// TeardownWorker closes the worker's connection.
func (Scanner) TeardownWorker(_ context.Context, env psengine.Env) error {
	if sess, ok := SessionOf(env); ok {
		return sess.Close()
	}
	return nil
}

// Accepts file artifacts: clamd scans content, not URLs.
func (Scanner) Accepts(a psengine.Artifact) bool { return a.Type == psengine.FileArtifact }

// Scan has clamd scan the artifact over the worker's session, passing its
// descriptor or streaming it (see the package doc for both, and for the
// answers).
func (s Scanner) Scan(ctx context.Context, env psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	if ctx.Err() != nil {
		return psengine.Analysis{}, context.Cause(ctx)
	}
	sess, ok := SessionOf(env)
	if !ok {
		addr, err := s.address(env)
		if err != nil {
			return psengine.Analysis{}, err
		}
		sess = s.newSession(addr)
		defer sess.Close()
	}
	reply, err := sess.Scan(ctx, ArtifactContent(a))
	var an psengine.Analysis
	switch {
	case errors.Is(err, clamd.ErrSizeLimit):
		an = psengine.Skipped(fmt.Errorf("clamd refused the artifact (%d bytes): over its StreamMaxLength: %w", a.Size, err))
	case err != nil:
		return psengine.Analysis{}, err
	default:
		an = Classify(reply)
	}
	v := answerVersion(env, sess)
	an.Metadata.Scanner.VendorVersion, an.Metadata.Scanner.SignaturesVersion = v.Engine, v.Signatures
	return an, nil
}

func (s Scanner) newSession(addr clamd.Address) *Session {
	sess := NewSession(addr)
	sess.SetStream(s.Stream)
	return sess
}

// Classify turns a FOUND or OK reply into an analysis (an ERROR reply is
// unknown).
func Classify(r clamd.Reply) psengine.Analysis {
	switch r.Status {
	case clamd.StatusFound:
		a := psengine.Analysis{
			Verdict:    psengine.Malicious,
			Confidence: FoundConfidence,
			Metadata:   psengine.Metadata{MalwareFamily: r.Signature},
		}
		if IsHeuristic(r.Signature) {
			a.Confidence, a.Metadata.Heuristic = HeuristicConfidence, true
		}
		return a
	case clamd.StatusOK:
		return psengine.Analysis{Verdict: psengine.Benign, Confidence: CleanConfidence}
	}
	return psengine.Analysis{Verdict: psengine.Unknown, Metadata: psengine.Metadata{Error: r.Message}}
}

// IsHeuristic reports whether a detection name is one of ClamAV's
// heuristic alerts: one of its dot-separated parts is Heuristics (or
// Heuristic), as in Heuristics.Encrypted.Zip or BC.Heuristic.Trojan.
func IsHeuristic(name string) bool {
	for part := range strings.SplitSeq(name, ".") {
		if part == "Heuristics" || part == "Heuristic" {
			return true
		}
	}
	return false
}

// Info is what the info command prints.
type Info struct {
	Address           string `json:"address"`
	Ping              string `json:"ping"`
	Version           string `json:"version"`
	VendorVersion     string `json:"vendor_version"`
	SignaturesVersion string `json:"signatures_version,omitempty"`
	SignaturesDate    string `json:"signatures_date,omitempty"`
}

// FileReport is what the scan_file command prints per file.
type FileReport struct {
	Path      string           `json:"path"`
	Result    string           `json:"result"` // OK, FOUND or ERROR
	Signature string           `json:"signature,omitempty"`
	Verdict   psengine.Verdict `json:"verdict"`
	Error     string           `json:"error,omitempty"`
}

// Commands exposes info (clamd's address, PING and VERSION) and
// scan_file PATH... (each file's clamd reply and verdict), usable
// without a bounty.
func (s Scanner) Commands() []psengine.Command {
	return []psengine.Command{
		{
			Name: "info",
			Help: "info: clamd's address, PING and VERSION",
			Run: func(ctx context.Context, env psengine.Env, args []string) (any, error) {
				if len(args) != 0 {
					return nil, errors.New("info takes no arguments")
				}
				addr, err := s.address(env)
				if err != nil {
					return nil, err
				}
				return info(ctx, addr)
			},
		},
		{
			Name: "scan_file",
			Help: "scan_file PATH...: have clamd scan each file and print its reply and verdict",
			Run: func(ctx context.Context, env psengine.Env, args []string) (any, error) {
				if len(args) == 0 {
					return nil, errors.New("scan_file needs at least one PATH")
				}
				addr, err := s.address(env)
				if err != nil {
					return nil, err
				}
				return scanFiles(ctx, s.newSession(addr), args)
			},
		},
	}
}

func info(ctx context.Context, addr clamd.Address) (Info, error) {
	c, err := clamd.Dial(ctx, addr)
	if err != nil {
		return Info{}, err
	}
	defer c.Close()
	if err := c.Ping(ctx); err != nil {
		return Info{}, err
	}
	v, err := c.Version(ctx)
	if err != nil {
		return Info{}, err
	}
	return Info{
		Address: addr.String(), Ping: "PONG", Version: v.Raw,
		VendorVersion: v.Engine, SignaturesVersion: v.Signatures, SignaturesDate: v.Date,
	}, nil
}

func scanFiles(ctx context.Context, sess *Session, paths []string) ([]FileReport, error) {
	defer sess.Close()
	reports := make([]FileReport, 0, len(paths))
	for _, path := range paths {
		rep := FileReport{Path: path, Verdict: psengine.Unknown}
		reply, err := sess.Scan(ctx, FileContent(path))
		switch {
		case errors.Is(err, clamd.ErrUnreachable), errors.Is(err, clamd.ErrConnection), ctx.Err() != nil:
			return nil, err
		case err != nil:
			rep.Result, rep.Error = string(clamd.StatusError), err.Error()
		default:
			rep.Result, rep.Signature, rep.Verdict = string(reply.Status), reply.Signature, Classify(reply).Verdict
		}
		reports = append(reports, rep)
	}
	return reports, nil
}
