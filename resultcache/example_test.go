package resultcache_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/envdirs"
	"github.com/polyswarm/psengine/resultcache"
)

// An engine whose scans are remembered: the same content again is
// answered without a scan.
func Example() {
	state, _ := os.MkdirTemp("", "state")
	defer os.RemoveAll(state)
	cache, err := resultcache.Open(filepath.Join(state, resultcache.DefaultFile), resultcache.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cache.Close() // after the engine's Shutdown

	scans := 0
	scanner := psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
		scans++
		return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.3}, nil
	})
	engine := psengine.New(scanner, psengine.WithResultCache(cache), psengine.WithDirs(envdirs.Dirs{Home: state, Temp: state}))
	ctx := context.Background()
	defer engine.Shutdown(ctx)
	for range 3 {
		res, _ := engine.Analyze(ctx, "data:,the%20same%20content")
		fmt.Println(res.Analysis.Verdict, res.Analysis.Bid)
	}
	fmt.Println("scans:", scans)
	// Output:
	// benign 343750000000000000
	// benign 343750000000000000
	// benign 343750000000000000
	// scans: 1
}
