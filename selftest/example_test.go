package selftest_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/selftest"
)

// A corpus checks definitions: here a scan function that lost its
// detection of the sample.
func ExampleCorpus_Check() {
	dir, _ := os.MkdirTemp("", "corpus")
	defer os.RemoveAll(dir)
	_ = os.WriteFile(filepath.Join(dir, "sample.bin"), []byte("xx MARKER xx"), 0o600)
	_ = os.WriteFile(filepath.Join(dir, "readme.txt"), []byte("hello"), 0o600)
	_ = os.WriteFile(filepath.Join(dir, selftest.ManifestFile), []byte(`
# PATH       EXPECT     [FAMILY]
sample.bin   malicious  Marker*
readme.txt   benign
`), 0o600)
	corpus, err := selftest.Load(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	lossy := func(context.Context, psengine.Artifact) (psengine.Analysis, error) {
		return psengine.Analysis{Verdict: psengine.Unknown}, nil
	}
	_, err = corpus.Check(context.Background(), lossy)
	fmt.Println(strings.ReplaceAll(err.Error(), dir, "DIR"))
	// Output:
	// self-test corpus DIR: 1 of 2 files fail: sample.bin: detection lost: want malicious "Marker*", got unknown
}
