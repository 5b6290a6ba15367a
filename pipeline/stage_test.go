package pipeline_test

import (
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/polyswarm/psengine/pipeline"
)

var errBoom = errors.New("boom")

// TestPanicError checks what a recovered panic carries, whatever was passed
// to panic.
func TestPanicError(t *testing.T) {
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
			err := pipeline.Protect(func() { panicker(tt.value) })
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
