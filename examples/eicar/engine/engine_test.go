package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/examples/eicar/engine"
	"github.com/polyswarm/psengine/psenginetest"
)

func TestIsTestFile(t *testing.T) {
	sample := engine.Sample()
	tests := []struct {
		name string
		data []byte
		want bool
	}{
		{"the string alone", sample, true},
		{"trailing white space", append(bytes.Clone(sample), " \t\r\n\x1a"...), true},
		{"128 bytes", append(bytes.Clone(sample), bytes.Repeat([]byte(" "), 128-len(sample))...), true},
		{"129 bytes", append(bytes.Clone(sample), bytes.Repeat([]byte(" "), 129-len(sample))...), false},
		{"trailing text", append(bytes.Clone(sample), "x"...), false},
		{"leading byte", append([]byte(" "), sample...), false},
		{"truncated", sample[:len(sample)-1], false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		if got := engine.IsTestFile(tt.data, int64(len(tt.data))); got != tt.want {
			t.Errorf("%s: IsTestFile = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestConformance(t *testing.T) {
	sample := engine.Sample()
	dir := t.TempDir()
	psenginetest.TestScanner(t, engine.Scanner{}, []psenginetest.Case{
		{Name: "eicar", Data: sample, Want: psengine.Malicious},
		{Name: "eicar with newline", Data: append(bytes.Clone(sample), '\n'), Want: psengine.Malicious},
		{Name: "embedded", Data: append([]byte("prefix "), sample...), Want: psengine.Suspicious},
		{Name: "clean", Data: []byte("hello"), Want: psengine.Unknown},
		{Name: "url", URL: "https://example.test/", Want: psengine.Unknown},
	}, psengine.WithDirs(envdirs.Dirs{Home: dir, Temp: dir}))
}

// The scanner is a plain value: call it as it is, with a zero Env.
func ExampleScanner_Scan() {
	a := psengine.ArtifactFromBytes(engine.Sample())
	defer a.Close()
	analysis, err := engine.Scanner{}.Scan(context.Background(), psengine.Env{}, a)
	fmt.Println(analysis.Verdict, analysis.Metadata.MalwareFamily, analysis.Confidence, err)
	// Output: malicious EICAR-Test-File 0.95 <nil>
}
