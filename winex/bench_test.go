package winex_test

import (
	"bytes"
	"context"
	"os/exec"
	"runtime"
	"testing"

	"github.com/polyswarm/psengine/winex"
)

// BenchmarkWineRun compares a run of `cmd /c exit 0` with the persistent
// wineserver of StartServer and without any server alive (each run then
// starts one, with Wine's session processes). Run with -benchtime=5x: a cold
// iteration takes about a second.
func BenchmarkWineRun(b *testing.B) {
	w := needWine(b)
	ctx := context.Background()
	run := func(b *testing.B) {
		res, err := winex.Run(ctx, w.Command("cmd", "/c", "exit", "0"))
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("run: %v, exit %d", err, res.ExitCode)
		}
	}
	b.Run("persistent-server", func(b *testing.B) {
		if err := w.StartServer(ctx); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			run(b)
		}
	})
	b.Run("no-server", func(b *testing.B) {
		if err := w.StopServer(ctx); err != nil {
			b.Fatal(err)
		}
		defer func() {
			if err := w.StartServer(ctx); err != nil {
				b.Fatal(err)
			}
		}()
		for b.Loop() {
			run(b)
			b.StopTimer()
			if err := w.WaitServer(ctx); err != nil { // the on-demand server exits
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
}

// BenchmarkRunNative measures Run's overhead (process group, pipes, drain,
// decoding) against a plain os/exec run of the same program.
func BenchmarkRunNative(b *testing.B) {
	if runtime.GOOS == "windows" {
		b.Skip("uses /bin/true")
	}
	ctx := context.Background()
	b.Run("winex", func(b *testing.B) {
		for b.Loop() {
			if _, err := winex.Run(ctx, winex.Cmd{Path: "/bin/true"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("os-exec", func(b *testing.B) {
		for b.Loop() {
			var out, errb bytes.Buffer
			c := exec.CommandContext(ctx, "/bin/true")
			c.Stdout, c.Stderr = &out, &errb
			if err := c.Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	cp1252 := bytes.Repeat([]byte("d\xe9tection trouv\xe9e\r\n"), 1<<14)
	utf16 := utf16le(string(bytes.Repeat([]byte("detection found\r\n"), 1<<14)))
	for _, c := range []struct {
		name string
		in   []byte
	}{{"cp1252", cp1252}, {"utf16le", utf16}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.in)))
			for b.Loop() {
				winex.Decode(c.in, winex.Auto)
			}
		})
	}
}
