package pipeline_test

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/polyswarm/psengine/pipeline"
)

var errBoom = errors.New("boom")

func TestThen(t *testing.T) {
	parse := func(_ context.Context, s string) (int, error) { return strconv.Atoi(s) }
	double := func(_ context.Context, n int) (int, error) { return 2 * n, nil }
	st := pipeline.Then(parse, double)

	got, err := st(t.Context(), "21")
	if err != nil || got != 42 {
		t.Fatalf("Then(21) = %v, %v; want 42, nil", got, err)
	}
	if _, err := st(t.Context(), "x"); !errors.Is(err, strconv.ErrSyntax) {
		t.Fatalf("Then(x) error = %v; want strconv.ErrSyntax", err)
	}
}

func TestThenSkipsSecond(t *testing.T) {
	called := false
	second := func(_ context.Context, n int) (int, error) { called = true; return n, nil }

	failing := func(context.Context, int) (int, error) { return 0, errBoom }
	if _, err := pipeline.Then(failing, second)(t.Context(), 1); !errors.Is(err, errBoom) || called {
		t.Fatalf("first failed: err = %v, second called = %v; want boom, false", err, called)
	}

	cause := errors.New("caller gave up")
	ctx, cancel := context.WithCancelCause(t.Context())
	cancelling := func(_ context.Context, n int) (int, error) { cancel(cause); return n, nil }
	if _, err := pipeline.Then(cancelling, second)(ctx, 1); err != cause || called {
		t.Fatalf("ctx done after first: err = %v, second called = %v; want %v, false", err, called, cause)
	}
}

func TestRecover(t *testing.T) {
	tests := []struct {
		name   string
		value  any
		unwrap error
	}{
		{"string", "bad input", nil},
		{"error", io.EOF, io.EOF},
		{"nil", nil, nil}, // Go 1.21+: panic(nil) panics with *runtime.PanicNilError
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := pipeline.Recover(func(context.Context, int) (int, error) { panicker(tt.value); return 1, nil })
			out, err := st(t.Context(), 0)
			if out != 0 {
				t.Errorf("out = %d; want the zero value", out)
			}
			pe, ok := errors.AsType[*pipeline.PanicError](err)
			if !ok {
				t.Fatalf("err = %v; want *PanicError", err)
			}
			if !errors.Is(err, pipeline.ErrPanic) {
				t.Errorf("errors.Is(err, ErrPanic) = false")
			}
			if tt.value == nil {
				if _, ok := pe.Value.(*runtime.PanicNilError); !ok {
					t.Errorf("Value = %#v; want *runtime.PanicNilError", pe.Value)
				}
			} else if pe.Value != tt.value {
				t.Errorf("Value = %#v; want %#v", pe.Value, tt.value)
			}
			if tt.unwrap != nil && !errors.Is(err, tt.unwrap) {
				t.Errorf("errors.Is(err, %v) = false", tt.unwrap)
			}
			if !strings.Contains(string(pe.Stack), "pipeline_test.panicker") {
				t.Errorf("Stack does not name the panicking function:\n%s", pe.Stack)
			}
			if want := "pipeline: panic: "; !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Error() = %q; want one line starting %q", err.Error(), want)
			}
		})
	}
}

//go:noinline
func panicker(v any) { panic(v) }

func TestRecoverPassesResults(t *testing.T) {
	st := pipeline.Recover(func(_ context.Context, n int) (int, error) { return n + 1, errBoom })
	out, err := st(t.Context(), 1)
	if diff := cmp.Diff(2, out); diff != "" || err != errBoom {
		t.Fatalf("Recover changed the result: err = %v, out (-want +got):\n%s", err, diff)
	}
}

func TestProtect(t *testing.T) {
	ran := false
	if err := pipeline.Protect(func() { ran = true }); err != nil || !ran {
		t.Fatalf("Protect(ok) = %v, ran = %v; want nil, true", err, ran)
	}
	err := pipeline.Protect(func() { panicker("hook failed") })
	pe, ok := errors.AsType[*pipeline.PanicError](err)
	if !ok || pe.Value != "hook failed" {
		t.Fatalf("Protect(panic) = %#v; want *PanicError{Value: hook failed}", err)
	}
}
