package psengine

import (
	"encoding/json"
	"fmt"

	"github.com/polyswarm/psengine/internal/envwire"
)

// What crosses to a child process of the process backend: the engine's Env
// after setup, encoded once at Start (internal/envwire).

// keys holds the keys made with a name, for a child to find its values'
// keys.
var keys envwire.Registry[*keyID]

// snapshot encodes env for a child, or says which value cannot cross.
func (e Env) snapshot() (envwire.Snapshot, error) {
	head, err := json.Marshal(e.head)
	if err != nil {
		return envwire.Snapshot{}, fmt.Errorf("the engine's head: %w", err)
	}
	s := envwire.Snapshot{Name: e.name, Dirs: e.dirs, Head: head}
	for n := e.vals; n != nil; n = n.next {
		id := n.key
		data, err := encodeValue(id, n.val)
		if err != nil {
			return envwire.Snapshot{}, fmt.Errorf("the value of key %q cannot reach child processes: %w", id.name, err)
		}
		s.Values = append(s.Values, envwire.Value{Key: id.name, Data: data})
	}
	// Oldest first, so that the child's Env finds the newest value of a
	// key set twice first, as the parent's does.
	for i, j := 0, len(s.Values)-1; i < j; i, j = i+1, j-1 {
		s.Values[i], s.Values[j] = s.Values[j], s.Values[i]
	}
	return s, nil
}

func encodeValue(id *keyID, v any) ([]byte, error) {
	if _, err := keys.Named(id.name); err != nil {
		return nil, err
	}
	if err := id.codec.Check(); err != nil {
		return nil, err
	}
	return id.codec.Encode(v)
}

// envFromSnapshot rebuilds the Env s was made from.
func envFromSnapshot(s envwire.Snapshot) (Env, error) {
	env := Env{name: s.Name, dirs: s.Dirs}
	if err := json.Unmarshal(s.Head, &env.head); err != nil {
		return Env{}, fmt.Errorf("the engine's head: %w", err)
	}
	for _, v := range s.Values {
		id, err := keys.Named(v.Key)
		if err != nil {
			return Env{}, err
		}
		val, err := id.codec.Decode(v.Data)
		if err != nil {
			return Env{}, fmt.Errorf("the value of key %q: %w", v.Key, err)
		}
		env.vals = &envNode{key: id, val: val, next: env.vals}
	}
	return env, nil
}
