package envwire

import (
	"strings"
	"testing"
)

type exported struct {
	A int
	B map[string][]byte
	C *exported
}

// unexported's field would be lost on the way: gob drops it silently.
type unexported struct{ a int }

var _ = unexported{a: 1}.a

func TestGobCodec(t *testing.T) {
	in := exported{A: 1, B: map[string][]byte{"k": []byte("v")}, C: &exported{A: 2}}
	c := Gob[exported]()
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	data, err := c.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(exported)
	if got.A != 1 || string(got.B["k"]) != "v" || got.C == nil || got.C.A != 2 {
		t.Errorf("round trip: %+v", got)
	}
	// A nil pointer and a nil map cross too.
	if data, err := Gob[*exported]().Encode((*exported)(nil)); err != nil {
		t.Error(err)
	} else if out, err := Gob[*exported]().Decode(data); err != nil || out.(*exported) != nil {
		t.Errorf("nil pointer: %v, %v", out, err)
	}

	for _, c := range []struct {
		codec Codec
		want  string
	}{
		{Gob[unexported](), "unexported field a"},
		{Gob[func()](), "cannot be encoded"},
		{Gob[map[string]chan int](), "cannot be encoded"},
	} {
		if err := c.codec.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check: %v, want %q", err, c.want)
		}
	}
}

func TestRegistry(t *testing.T) {
	var r Registry[int]
	if _, err := r.Named("a"); err == nil {
		t.Error("Named of an unknown name: no error")
	}
	r.Register("a", 1)
	if k, err := r.Named("a"); err != nil || k != 1 {
		t.Errorf("Named(a) = %d, %v", k, err)
	}
	r.Register("a", 2)
	if _, err := r.Named("a"); err == nil || !strings.Contains(err.Error(), "2 keys") {
		t.Errorf("Named of a name given twice: %v", err)
	}
}
