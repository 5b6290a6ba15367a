package psengine

import (
	"bytes"
	"encoding"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"

	"github.com/polyswarm/psengine/envdirs"
)

// What crosses to a child process of the process backend: the engine's Env
// after setup, encoded once at Start (see envSnapshot).

// valueCodec encodes the values of one key.
type valueCodec interface {
	encode(v any) ([]byte, error)
	decode(data []byte) (any, error)
	check() error // whether a value of the key's type crosses intact
}

type gobCodec[T any] struct{}

// boxed lets gob encode any T, nil pointers and maps included.
type boxed[T any] struct{ V T }

func (gobCodec[T]) encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	err := gob.NewEncoder(&buf).Encode(boxed[T]{V: v.(T)})
	return buf.Bytes(), err
}

func (gobCodec[T]) decode(data []byte) (any, error) {
	var b boxed[T]
	err := gob.NewDecoder(bytes.NewReader(data)).Decode(&b)
	return b.V, err
}

func (gobCodec[T]) check() error { return crossable(reflect.TypeFor[T](), map[reflect.Type]bool{}) }

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

// The keys made with a name, by name, for a child to find its values' keys.
var keys struct {
	sync.Mutex
	byName map[string][]*keyID
}

func registerKey(id *keyID) {
	keys.Lock()
	defer keys.Unlock()
	if keys.byName == nil {
		keys.byName = make(map[string][]*keyID)
	}
	keys.byName[id.name] = append(keys.byName[id.name], id)
}

// keyNamed returns the one key made with name.
func keyNamed(name string) (*keyID, error) {
	keys.Lock()
	defer keys.Unlock()
	switch ids := keys.byName[name]; len(ids) {
	case 0:
		return nil, fmt.Errorf("no key named %q in this process (make keys as package variables)", name)
	case 1:
		return ids[0], nil
	default:
		return nil, fmt.Errorf("%d keys are named %q: give each a name of its own", len(ids), name)
	}
}

// envSnapshot is an Env in the form a child process receives.
type envSnapshot struct {
	Name   string
	Dirs   envdirs.Dirs
	Head   []byte // Metadata as JSON
	Values []wireValue
}

type wireValue struct {
	Key  string
	Data []byte
}

// snapshot encodes env for a child, or says which value cannot cross.
func (e Env) snapshot() (envSnapshot, error) {
	head, err := json.Marshal(e.head)
	if err != nil {
		return envSnapshot{}, fmt.Errorf("the engine's head: %w", err)
	}
	s := envSnapshot{Name: e.name, Dirs: e.dirs, Head: head}
	for n := e.vals; n != nil; n = n.next {
		id := n.key
		if _, err := keyNamed(id.name); err != nil {
			return envSnapshot{}, fmt.Errorf("the value of key %q cannot reach child processes: %w", id.name, err)
		}
		if err := id.codec.check(); err != nil {
			return envSnapshot{}, fmt.Errorf("the value of key %q cannot reach child processes: %w", id.name, err)
		}
		data, err := id.codec.encode(n.val)
		if err != nil {
			return envSnapshot{}, fmt.Errorf("the value of key %q cannot reach child processes: %w", id.name, err)
		}
		s.Values = append(s.Values, wireValue{Key: id.name, Data: data})
	}
	// Oldest first, so that the child's Env finds the newest value of a
	// key set twice first, as the parent's does.
	for i, j := 0, len(s.Values)-1; i < j; i, j = i+1, j-1 {
		s.Values[i], s.Values[j] = s.Values[j], s.Values[i]
	}
	return s, nil
}

// env rebuilds the Env a snapshot was made from.
func (s envSnapshot) env() (Env, error) {
	env := Env{name: s.Name, dirs: s.Dirs}
	if err := json.Unmarshal(s.Head, &env.head); err != nil {
		return Env{}, fmt.Errorf("the engine's head: %w", err)
	}
	for _, v := range s.Values {
		id, err := keyNamed(v.Key)
		if err != nil {
			return Env{}, err
		}
		val, err := id.codec.decode(v.Data)
		if err != nil {
			return Env{}, fmt.Errorf("the value of key %q: %w", v.Key, err)
		}
		env.vals = &envNode{key: id, val: val, next: env.vals}
	}
	return env, nil
}
