package psengine

import (
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/internal/envwire"
)

// Env is what a scanner may know besides the artifact: the engine's base
// directories, a logger, the engine's head metadata and the values its
// setup stored under typed keys. It is built once (engine setup, then each
// worker's setup on top) and then only copied: it is passed by value and
// nothing in it can be changed in place, so no two workers share mutable
// state through it. The zero Env is ready to use (no values, a logger that
// discards), which is what a test or a debugger session passes.
type Env struct {
	vals   *envNode
	dirs   envdirs.Dirs
	logger *slog.Logger
	head   Metadata
	name   string
}

// envNode is one immutable link of an Env's values; With adds a link in front.
type envNode struct {
	key  *keyID
	val  any
	next *envNode
}

type keyID struct {
	name  string
	codec envwire.Codec // encodes the key's values for child processes
}

// Name returns the engine's name ("" in a zero Env).
func (e Env) Name() string { return e.name }

// Dirs returns the engine's resolved base directories.
func (e Env) Dirs() envdirs.Dirs { return e.dirs }

// Logger returns the engine's logger; never nil.
func (e Env) Logger() *slog.Logger {
	if e.logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.logger
}

// Head returns the engine-level metadata gathered once at start (product,
// versions, environment). The slices and maps in it must not be modified.
func (e Env) Head() Metadata { return e.head }

// WithDirs returns a copy of e with dirs as its base directories.
func (e Env) WithDirs(dirs envdirs.Dirs) Env { e.dirs = dirs; return e }

// WithLogger returns a copy of e with l as its logger.
func (e Env) WithLogger(l *slog.Logger) Env { e.logger = l; return e }

// Key is a typed key for a value in an Env, like a context key without
// `any` at the call site. Make keys with NewKey, as package variables.
type Key[T any] struct{ id *keyID }

var keyCount atomic.Int64

// NewKey returns a new key. Keys with the same name are still distinct, but
// with the process backend (WithProcessWorkers) a key's name is how its
// value finds its key in a child process: the keys of the values setup
// stores must then be package variables with unique names (Start fails
// otherwise), and their values must be encodable with encoding/gob without
// losing anything (exported fields, or a type that implements
// gob.GobEncoder or encoding.BinaryMarshaler).
func NewKey[T any](name string) Key[T] {
	named := name != ""
	if !named {
		name = fmt.Sprintf("key#%d", keyCount.Add(1))
	}
	id := &keyID{name: name, codec: envwire.Gob[T]()}
	if named {
		keys.Register(name, id)
	}
	return Key[T]{id: id}
}

// String returns the key's name.
func (k Key[T]) String() string {
	if k.id == nil {
		return "<zero Key>"
	}
	return k.id.name
}

// With returns a copy of env in which k holds v. env itself is unchanged.
// Store values that are safe to read concurrently (and never modify them
// afterwards): an Env is shared by copies.
func (k Key[T]) With(env Env, v T) Env {
	if k.id == nil {
		panic("psengine: With on a zero Key; make keys with NewKey")
	}
	env.vals = &envNode{key: k.id, val: v, next: env.vals}
	return env
}

// Value returns the value k holds in env, and whether it holds one.
func (k Key[T]) Value(env Env) (T, bool) {
	for n := env.vals; n != nil; n = n.next {
		if n.key == k.id {
			return n.val.(T), true
		}
	}
	var zero T
	return zero, false
}

// Must returns the value k holds in env; it panics, naming the key, when
// there is none (a programming error: setup did not store it).
func (k Key[T]) Must(env Env) T {
	v, ok := k.Value(env)
	if !ok {
		panic(fmt.Sprintf("psengine: env has no value for key %q (did setup store it?)", k.String()))
	}
	return v
}

// compact returns the chain n with only the newest value of each key,
// in the same order; n itself when no key is set twice. An Env updated
// over and over (each update setting its keys again) then keeps only the
// values it can return, not every value it ever held.
func (n *envNode) compact() *envNode {
	seen := map[*keyID]bool{}
	var keep []*envNode
	shadowed := false
	for m := n; m != nil; m = m.next {
		if seen[m.key] {
			shadowed = true
			continue
		}
		seen[m.key] = true
		keep = append(keep, m)
	}
	if !shadowed {
		return n
	}
	var out *envNode
	for i := len(keep) - 1; i >= 0; i-- {
		out = &envNode{key: keep[i].key, val: keep[i].val, next: out}
	}
	return out
}

// rebase returns e's values that were added on top of oldBase, re-applied on
// top of newBase (used when an update replaces the engine's Env under the
// workers' own values).
func (e Env) rebase(oldBase, newBase Env) Env {
	var added []*envNode
	for n := e.vals; n != nil && n != oldBase.vals; n = n.next {
		added = append(added, n)
	}
	out := newBase
	out.logger = e.logger // the worker's (it may name the worker)
	for i := len(added) - 1; i >= 0; i-- {
		out.vals = &envNode{key: added[i].key, val: added[i].val, next: out.vals}
	}
	return out
}
