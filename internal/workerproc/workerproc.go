// Package workerproc runs the process backend's scans in worker children:
// the engine's own program, re-executed (package child), one per worker
// slot, each set up once with the engine's Env and then scanning what the
// parent sends, one at a time. It supervises them: a child that dies is
// replaced, one whose scan ignores its deadline is killed Config.Grace
// later, children are recycled after MaxTasks scans or past MaxMemory, and
// each is sandboxed (package sandbox) when the Generation says how.
//
// The package knows nothing of the engine's types: the Env crosses as the
// bytes the engine encoded (Generation.Env), an artifact as a path or
// bytes (Artifact), an analysis as the engine's JSON of it (Result). The
// engine adapts both sides: the parent's (Pool) and the child's (Serve with
// a Handler).
package workerproc

import (
	"errors"
	"time"

	"github.com/polyswarm/psengine/internal/sandbox"
)

// ErrDied: the child scanning the artifact died (a panic in a goroutine
// the scanner started, an exit, a signal, the memory limit, an OOM kill).
var ErrDied = errors.New("psengine: worker process died")

// ErrMemoryLimit is wrapped, with ErrDied, when a child was killed because
// its memory passed Config.MaxMemory during a scan.
var ErrMemoryLimit = errors.New("psengine: worker process memory limit")

// Generation is what children are set up with: the engine's Env, encoded,
// and, when the sandbox is on, the policy of its children (but their own
// directory) and the environment names the scanner declared. A child is
// replaced once the Generation it was set up with is no longer the one its
// scans are asked with (pointer identity).
type Generation struct {
	Env    []byte
	Policy *sandbox.Policy // nil: no sandbox
	Allow  []string
}

// Artifact is what a child scans: the real file at Path, or Data.
type Artifact struct {
	Type     string
	URI      string
	SHA256   string
	Size     int64
	MIMEType string
	Path     string
	Data     []byte
}

// Error is a scan's error on its way back: its message, and what the
// engine needs to know of it to classify it as it would the original.
type Error struct {
	Message     string
	Unsupported bool
	Encrypted   bool
	Panic       bool
	Stack       []byte
	Goexit      bool
}

// Result is a scan's outcome: the analysis (the engine's JSON of it), or
// its error.
type Result struct {
	Analysis []byte
	Err      *Error
}

// Messages between a parent and its children.
type (
	toChild struct {
		Hello  *hello
		Scan   *scanRequest
		Cancel uint64 // the ID of a scan whose ctx ended
	}
	hello struct {
		Env     []byte
		Sandbox *sandboxHello // nil: no sandbox
	}
	sandboxHello struct {
		Policy sandbox.Policy
		Temp   string // the child's temp directory
	}
	scanRequest struct {
		ID       uint64
		Artifact Artifact
		Deadline time.Time // zero: none
	}
	fromChild struct {
		Ready  *ready
		Result *scanResult
	}
	ready struct {
		Err     string          // the setup's error, if it failed
		Sandbox *sandbox.Report // what the sandbox put in force
	}
	scanResult struct {
		ID uint64
		Result
	}
)
