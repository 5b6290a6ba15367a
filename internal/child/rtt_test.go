//go:build linux

package child_test

import (
	"testing"
)

func BenchmarkRoundTrip(b *testing.B) {
	p, err := startB(b)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := p.Send(command{Op: "echo", Text: "x"}); err != nil {
			b.Fatal(err)
		}
		var r reply
		if err := p.Recv(&r); err != nil {
			b.Fatal(err)
		}
	}
	p.Kill()
	_ = p.Wait()
}
