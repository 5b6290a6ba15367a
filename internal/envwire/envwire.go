// Package envwire is how an engine's Env crosses to a child process of the
// process backend: each typed key's values encoded by a Codec, the keys
// found again in the child by name (Registry), and the whole in a Snapshot,
// encoded once at Start.
package envwire

import (
	"bytes"
	"encoding"
	"encoding/gob"
	"fmt"
	"reflect"
	"sync"

	"github.com/polyswarm/psengine/envdirs"
)

// Snapshot is an Env in the form a child process receives.
type Snapshot struct {
	Name   string
	Dirs   envdirs.Dirs
	Head   []byte  // the engine's head metadata, as JSON
	Values []Value // oldest first
}

// Value is one key's value, encoded by the key's Codec.
type Value struct {
	Key  string
	Data []byte
}

// Codec encodes the values of one key.
type Codec interface {
	Encode(v any) ([]byte, error)
	Decode(data []byte) (any, error)
	// Check says why a value of the key's type would not cross intact.
	Check() error
}

// Gob is the Codec of values of type T with encoding/gob.
func Gob[T any]() Codec { return gobCodec[T]{} }

type gobCodec[T any] struct{}

// boxed lets gob encode any T, nil pointers and maps included.
type boxed[T any] struct{ V T }

func (gobCodec[T]) Encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	err := gob.NewEncoder(&buf).Encode(boxed[T]{V: v.(T)})
	return buf.Bytes(), err
}

func (gobCodec[T]) Decode(data []byte) (any, error) {
	var b boxed[T]
	err := gob.NewDecoder(bytes.NewReader(data)).Decode(&b)
	return b.V, err
}

func (gobCodec[T]) Check() error { return crossable(reflect.TypeFor[T](), map[reflect.Type]bool{}) }

var (
	gobEncoder    = reflect.TypeFor[gob.GobEncoder]()
	binaryEncoder = reflect.TypeFor[encoding.BinaryMarshaler]()
)

// crossable reports why values of t would not survive encoding/gob intact:
// functions and channels cannot be encoded, and unexported struct fields
// are silently dropped (unless the type encodes itself).
func crossable(t reflect.Type, seen map[reflect.Type]bool) error {
	if seen[t] {
		return nil
	}
	seen[t] = true
	if t.Implements(gobEncoder) || t.Implements(binaryEncoder) ||
		reflect.PointerTo(t).Implements(gobEncoder) || reflect.PointerTo(t).Implements(binaryEncoder) {
		return nil
	}
	switch t.Kind() {
	case reflect.Func, reflect.Chan, reflect.UnsafePointer:
		return fmt.Errorf("%s cannot be encoded", t)
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return crossable(t.Elem(), seen)
	case reflect.Map:
		if err := crossable(t.Key(), seen); err != nil {
			return err
		}
		return crossable(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				return fmt.Errorf("%s has the unexported field %s, which would be lost (export it, or implement gob.GobEncoder)", t, f.Name)
			}
			if err := crossable(f.Type, seen); err != nil {
				return err
			}
		}
	}
	return nil
}

// Registry holds the keys made with a name, by name, so that a child finds
// its values' keys. The zero Registry is ready to use; it is safe for
// concurrent use.
type Registry[K any] struct {
	mu     sync.Mutex
	byName map[string][]K
}

// Register records k under name.
func (r *Registry[K]) Register(name string, k K) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byName == nil {
		r.byName = make(map[string][]K)
	}
	r.byName[name] = append(r.byName[name], k)
}

// Named returns the one key registered under name; an error when there is
// none or more than one.
func (r *Registry[K]) Named(name string) (K, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var zero K
	switch ks := r.byName[name]; len(ks) {
	case 0:
		return zero, fmt.Errorf("no key named %q in this process (make keys as package variables)", name)
	case 1:
		return ks[0], nil
	default:
		return zero, fmt.Errorf("%d keys are named %q: give each a name of its own", len(ks), name)
	}
}
