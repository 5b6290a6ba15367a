package psengine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/bid"
	"github.com/polyswarm/psengine/envdirs"
)

// scanMarker is a whole engine: a pure scan function.
func scanMarker(ctx context.Context, env psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
	data, err := a.Bytes()
	if err != nil {
		return psengine.Analysis{}, err
	}
	if bytes.Contains(data, []byte("MALWARE")) {
		return psengine.Analysis{
			Verdict:    psengine.Malicious,
			Confidence: 0.5,
			Metadata:   psengine.Metadata{MalwareFamily: "Example.Marker"},
		}, nil
	}
	return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.25}, nil
}

// exampleDirs keeps the examples from resolving the machine's directories.
var exampleDirs = psengine.WithDirs(envdirs.Dirs{Home: os.TempDir(), Temp: os.TempDir()})

func Example() {
	engine := psengine.New(psengine.ScannerFunc(scanMarker),
		psengine.WithWorkers(2), psengine.WithProduct("Example Engine"), exampleDirs)
	defer engine.Shutdown(context.Background())

	res, err := engine.Analyze(context.Background(), "data:,this%20is%20MALWARE")
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	a := res.Analysis
	fmt.Println(a.Verdict, a.Metadata.MalwareFamily, a.Metadata.Product)
	fmt.Println("bid:", a.Bid, "=", bid.Linear(res.Bounty.Rules, 0.5))
	// Output:
	// malicious Example.Marker example-engine
	// bid: 531250000000000000 = 531250000000000000
}

// A scan function is callable as it is, in a test or a debugger: a zero Env
// and an artifact made from bytes are all it needs.
func ExampleScannerFunc() {
	a := psengine.ArtifactFromBytes([]byte("hello"))
	defer a.Close()
	analysis, err := scanMarker(context.Background(), psengine.Env{}, a)
	fmt.Println(analysis.Verdict, err)
	// Output: benign <nil>
}

func ExampleParseBounty() {
	b, err := psengine.ParseBounty([]byte(`{
		"id": 123456789012345678901234567890,
		"artifact_type": "FILE",
		"artifact_uri": "https://example.test/artifact",
		"expiration": "2021-02-19T10:13:47.036168",
		"rules": {"min_allowed_bid": 62500000000000000, "max_allowed_bid": 1000000000000000000},
		"a_field_from_the_future": true
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(b.ID, b.ArtifactType, b.Expiration, b.Phase)

	_, err = psengine.ParseBounty([]byte(`{"id": 1, "artifact_type": "blob", "artifact_uri": "x"}`))
	fmt.Println(errors.Is(err, psengine.ErrMalformedBounty), err)
	// Output:
	// 123456789012345678901234567890 file 2021-02-19 10:13:47.036168 +0000 UTC assertion
	// true malformed bounty: artifact_type: "blob" is neither file nor url
}

func ExampleNewAnswer() {
	id, _ := psengine.NumberID("7")
	a := psengine.Analysis{Verdict: psengine.Malicious, Bid: 62500000000000000,
		Metadata: psengine.Metadata{MalwareFamily: "Eicar", Extra: map[string]any{"engine_note": "x"}}}
	assertion, _ := json.Marshal(psengine.NewAnswer(psengine.Bounty{ID: id, Phase: psengine.Assertion}, a))
	vote, _ := json.Marshal(psengine.NewAnswer(psengine.Bounty{ID: id, Phase: psengine.Arbitration}, a))
	fmt.Println(string(assertion))
	fmt.Println(string(vote))
	// Output:
	// {"verdict":"malicious","bid":62500000000000000,"metadata":{"engine_note":"x","malware_family":"Eicar"}}
	// {"verdict":"malicious","metadata":{"engine_note":"x","malware_family":"Eicar"}}
}

func ExampleCannotFetch() {
	a := psengine.CannotFetch(errors.New("404 Not Found"))
	out, _ := json.Marshal(psengine.NewAnswer(psengine.Bounty{}, a)) // the protocol's answer
	fmt.Println(string(out))
	// Output: {"verdict":"unknown","bid":0,"metadata":{"malware_family":"","comments":["SKIPPED:CANNOT-FETCH"],"error":"404 Not Found"}}
}

// Typed keys carry what setup prepared to every scan, without `any` at the
// call site; an Env is never modified in place.
func ExampleKey() {
	signatures := psengine.NewKey[[]string]("signatures")
	env := signatures.With(psengine.Env{}, []string{"MALWARE", "EVIL"})

	sigs, ok := signatures.Value(env)
	fmt.Println(sigs, ok)
	_, ok = signatures.Value(psengine.Env{})
	fmt.Println(ok)
	// Output:
	// [MALWARE EVIL] true
	// false
}

// Hooks receive every result: the scanner's own (SuccessHook, ErrorHook)
// and the host's (OnSuccess, OnError).
func ExampleOnError() {
	failing := psengine.ScannerFunc(func(context.Context, psengine.Env, psengine.Artifact) (psengine.Analysis, error) {
		return psengine.Analysis{}, errors.New("engine crashed")
	})
	engine := psengine.New(failing, exampleDirs,
		psengine.OnError(func(_ context.Context, res psengine.Result) {
			fmt.Println("hook:", errors.Is(res.Err, psengine.ErrScan), strings.Contains(res.Err.Error(), "engine crashed"), res.Answered)
		}))
	defer engine.Shutdown(context.Background())

	res, _ := engine.Analyze(context.Background(), "data:,x")
	fmt.Println("answer:", res.Analysis.Verdict, res.Analysis.Bid)
	// Output:
	// hook: true true true
	// answer: unknown 0
}
