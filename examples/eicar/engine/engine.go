// Package engine is the EICAR example engine: a pure-Go scanner that
// recognises the EICAR anti-virus test file as its standard defines it.
//
// The test file is the 68-byte EICAR string at the very start of the file,
// optionally followed by whitespace (space, tab, CR, LF, Ctrl-Z), 128 bytes
// at most in all. Answers:
//
//   - the test file: malicious, family "EICAR-Test-File", confidence
//     "almost certain" (ICD 203: 95), so the bid is near the maximum;
//   - the EICAR string elsewhere (embedded, or followed by other bytes, or a
//     longer file): suspicious, family "EICAR-Test-File.Embedded" (suspicious
//     answers carry no bid);
//   - anything else: unknown. This engine knows one file; it has no opinion
//     on the others, and an unknown answer costs nothing.
//
// It shows every optional part of a scanner: a head (Describer), an
// acceptor (file artifacts only), exposed commands, and a bid policy.
package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/bid"
)

// Family names reported in metadata.malware_family.
const (
	Family         = "EICAR-Test-File"
	FamilyEmbedded = "EICAR-Test-File.Embedded"
)

// maxTestFile is the largest file the EICAR standard allows.
const maxTestFile = 128

// Sample returns the 68-byte EICAR test string, assembled at run time so no
// file of this repository holds it.
func Sample() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-" + "TEST-FILE!$H+H*")
}

// Scanner is the EICAR engine. The zero value is ready.
type Scanner struct{}

var (
	_ psengine.Scanner   = Scanner{}
	_ psengine.Describer = Scanner{}
	_ psengine.Acceptor  = Scanner{}
	_ psengine.Commander = Scanner{}
)

// scanWindow is how much of an artifact the scanner looks at for an
// embedded marker (the test file itself needs 129 bytes: one past the limit).
const scanWindow = 1 << 20

// Scan reads at most the first MiB of the artifact.
func (Scanner) Scan(ctx context.Context, _ psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	r, err := a.Open()
	if err != nil {
		return psengine.Analysis{}, err
	}
	defer r.Close()
	head, err := io.ReadAll(io.LimitReader(r, scanWindow))
	if err != nil {
		return psengine.Analysis{}, err
	}
	if err := ctx.Err(); err != nil {
		return psengine.Analysis{}, err
	}
	return Classify(head, a.Size), nil
}

// Classify answers for content whose first bytes are head and whose full
// size is size.
func Classify(head []byte, size int64) psengine.Analysis {
	sample := Sample()
	switch {
	case IsTestFile(head, size):
		c, _ := bid.AlmostCertain.Confidence()
		return psengine.Analysis{
			Verdict:    psengine.Malicious,
			Confidence: c,
			Metadata:   psengine.Metadata{MalwareFamily: Family},
		}
	case bytes.Contains(head, sample):
		c, _ := bid.Likely.Confidence()
		return psengine.Analysis{
			Verdict:    psengine.Suspicious,
			Confidence: c,
			Metadata: psengine.Metadata{
				MalwareFamily: FamilyEmbedded,
				Heuristic:     true,
				Comments:      []string{"EICAR string present, but not as the standard test file"},
			},
		}
	}
	return psengine.Analysis{Verdict: psengine.Unknown}
}

// IsTestFile reports whether content of the given size starting with head
// is the EICAR test file as its standard defines it.
func IsTestFile(head []byte, size int64) bool {
	sample := Sample()
	if size > maxTestFile || int64(len(head)) < size || !bytes.HasPrefix(head, sample) {
		return false
	}
	// The string is followed by whitespace and Ctrl-Z (0x1a) only.
	return len(bytes.Trim(head[len(sample):size], " \t\r\n\x1a")) == 0
}

// Describe is the engine's head, gathered once at start.
func (Scanner) Describe(context.Context, psengine.Env) (psengine.Metadata, error) {
	return psengine.Metadata{
		Product: "eicar-example",
		Scanner: psengine.ScannerInfo{
			Version:           "1.0.0",
			VendorVersion:     "psengine-eicar 1.0",
			SignaturesVersion: "eicar-2003",
		},
	}, nil
}

// Accepts file artifacts only: a URL is never the EICAR test file.
func (Scanner) Accepts(a psengine.Artifact) bool { return a.Type == psengine.FileArtifact }

// Commands exposes `check PATH...` and `sample PATH`.
func (Scanner) Commands() []psengine.Command {
	return []psengine.Command{
		{
			Name: "check",
			Help: "check PATH...: tell, per file, whether it is the EICAR test file",
			Run: func(ctx context.Context, _ psengine.Env, args []string) (any, error) {
				if len(args) == 0 {
					return nil, errors.New("check needs at least one PATH")
				}
				out := make(map[string]string, len(args))
				for _, path := range args {
					verdict, err := checkFile(path)
					if err != nil {
						return nil, err
					}
					out[path] = verdict
				}
				return out, nil
			},
		},
		{
			Name: "sample",
			Help: "sample PATH: write the EICAR test file to PATH (mode 0600)",
			Run: func(ctx context.Context, _ psengine.Env, args []string) (any, error) {
				if len(args) != 1 {
					return nil, errors.New("sample needs exactly one PATH")
				}
				if err := os.WriteFile(args[0], Sample(), 0o600); err != nil {
					return nil, err
				}
				return map[string]any{"path": args[0], "size": len(Sample())}, nil
			},
		},
	}
}

func checkFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	head, err := io.ReadAll(io.LimitReader(f, scanWindow))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return string(Classify(head, st.Size()).Verdict), nil
}
