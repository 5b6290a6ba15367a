package fetch_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/polyswarm/psengine/fetch"
	"github.com/polyswarm/psengine/psenginetest"
)

// BenchmarkDataURI compares Fetch of a 4 KiB base64 data: URI with a
// hand-written decode and hash of the same payload (the floor).
func BenchmarkDataURI(b *testing.B) {
	payload := randomBytes(4096, 20)
	encoded := base64.StdEncoding.EncodeToString(payload)
	uri := "data:application/octet-stream;base64," + encoded
	want := sha(payload)
	b.Run("fetch", func(b *testing.B) {
		p := fetch.Remote()
		b.SetBytes(int64(len(payload)))
		b.ReportAllocs()
		for b.Loop() {
			c, err := p.Fetch(b.Context(), uri, "")
			if err != nil || c.SHA256() != want {
				b.Fatal(err)
			}
			c.Close()
		}
	})
	b.Run("baseline", func(b *testing.B) {
		b.SetBytes(int64(len(payload)))
		b.ReportAllocs()
		for b.Loop() {
			decoded, err := base64.StdEncoding.DecodeString(encoded)
			if err != nil {
				b.Fatal(err)
			}
			sum := sha256.Sum256(decoded)
			if hex.EncodeToString(sum[:]) != want {
				b.Fatal("wrong sum")
			}
		}
	})
}

// BenchmarkLocalFile compares Fetch of a large local file (hashed in place)
// with io.Copy into sha256.New(). FETCH_BENCH_MIB sets the size (default 256).
func BenchmarkLocalFile(b *testing.B) {
	size := 256 << 20
	if s := os.Getenv("FETCH_BENCH_MIB"); s != "" {
		var mib int
		if _, err := fmt.Sscan(s, &mib); err == nil {
			size = mib << 20
		}
	}
	path := filepath.Join(b.TempDir(), "big")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	chunk := randomBytes(1<<20, 21)
	for range size >> 20 {
		if _, err := f.Write(chunk); err != nil {
			b.Skipf("cannot create a %d MiB file: %v", size>>20, err)
		}
	}
	f.Close()

	b.Run("fetch", func(b *testing.B) {
		p := fetch.Local()
		p.TempDir = b.TempDir()
		b.SetBytes(int64(size))
		b.ReportAllocs()
		for b.Loop() {
			c, err := p.Fetch(b.Context(), path, "")
			if err != nil || c.Size() != int64(size) {
				b.Fatal(err)
			}
			c.Close()
		}
	})
	b.Run("baseline", func(b *testing.B) {
		b.SetBytes(int64(size))
		b.ReportAllocs()
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			h := sha256.New()
			if _, err := io.Copy(h, f); err != nil {
				b.Fatal(err)
			}
			f.Close()
			_ = hex.EncodeToString(h.Sum(nil))
		}
	})
}

// BenchmarkSmallLocalFiles compares Fetch then View of 1 KiB local files
// (what the engine does for a path) with os.ReadFile and sha256 of the same
// files, in CPU time.
func BenchmarkSmallLocalFiles(b *testing.B) {
	dir := b.TempDir()
	paths := make([]string, 64)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprint(i))
		if err := os.WriteFile(paths[i], randomBytes(1024, uint64(i)), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("fetch", func(b *testing.B) {
		p := fetch.Local()
		defer psenginetest.MeasureCPU(b)()
		for i := 0; b.Loop(); i++ {
			c, err := p.Fetch(b.Context(), paths[i%len(paths)], "")
			if err != nil {
				b.Fatal(err)
			}
			if v, err := c.View(1 << 20); err != nil || len(v) != 1024 || len(c.SHA256()) != 64 {
				b.Fatal(err)
			}
			c.Close()
		}
	})
	b.Run("hand", func(b *testing.B) {
		defer psenginetest.MeasureCPU(b)()
		for i := 0; b.Loop(); i++ {
			data, err := os.ReadFile(paths[i%len(paths)])
			if err != nil {
				b.Fatal(err)
			}
			sum := sha256.Sum256(data)
			if len(data) != 1024 || len(hex.EncodeToString(sum[:])) != 64 {
				b.Fatal("short read")
			}
		}
	})
}

// BenchmarkLargeDataURI compares Fetch of a 4 MiB base64 data: URI, over the
// memory limit and so spilled to a temp file, with what one would write by
// hand: base64.StdEncoding.DecodeString, sha256, and the bytes written to a
// temp file. Target: at most 1.3x in CPU time.
func BenchmarkLargeDataURI(b *testing.B) {
	payload := randomBytes(4<<20, 22)
	encoded := base64.StdEncoding.EncodeToString(payload)
	uri := "data:application/octet-stream;base64," + encoded
	want := sha(payload)
	dir := b.TempDir()
	b.Run("fetch", func(b *testing.B) {
		p := fetch.Remote()
		p.TempDir = dir
		b.SetBytes(int64(len(payload)))
		defer psenginetest.MeasureCPU(b)()
		for b.Loop() {
			c, err := p.Fetch(b.Context(), uri, "")
			if err != nil || c.SHA256() != want {
				b.Fatal(err)
			}
			if err := c.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hand", func(b *testing.B) {
		b.SetBytes(int64(len(payload)))
		defer psenginetest.MeasureCPU(b)()
		for b.Loop() {
			decoded, err := base64.StdEncoding.DecodeString(encoded)
			if err != nil {
				b.Fatal(err)
			}
			sum := sha256.Sum256(decoded)
			f, err := os.CreateTemp(dir, "hand-*")
			if err != nil {
				b.Fatal(err)
			}
			_, err = f.Write(decoded)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil || hex.EncodeToString(sum[:]) != want {
				b.Fatal(err)
			}
			if err := os.Remove(f.Name()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
