package webhook_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/webhook"
)

// The host mounts the handler on its own server, here under /polyswarm.
// A bounty is answered 202 at once (the engine scans it afterwards and POSTs
// the answer to its response_url); the same delivery again is acknowledged
// without a second scan.
func Example() {
	scan := func(ctx context.Context, env psengine.Env, a psengine.Artifact) (psengine.Analysis, error) {
		return psengine.Analysis{Verdict: psengine.Benign, Confidence: 0.5}, nil
	}
	answers := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})) // PolySwarm's side
	defer answers.Close()
	engine := psengine.New(psengine.ScannerFunc(scan))
	defer engine.Shutdown(context.Background()) // answers the bounty before answers closes

	h, err := webhook.NewHandler(engine, webhook.WithSecret("s3cret"))
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/polyswarm", h)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	send := func(event, delivery string, body []byte) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/polyswarm", bytes.NewReader(body))
		req.Header.Set(webhook.HeaderEvent, event)
		req.Header.Set(webhook.HeaderDelivery, delivery)
		req.Header.Set(webhook.HeaderSignature, webhook.Sign("s3cret", body))
		res, err := srv.Client().Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		fmt.Println(res.StatusCode, strings.TrimSpace(string(out)))
	}
	bounty := []byte(`{"id": 1, "artifact_type": "FILE", "artifact_uri": "data:,hello",
		"expiration": "2100-01-01T00:00:00Z", "phase": "assertion",
		"response_url": "` + answers.URL + `/answer"}`)
	send("ping", "d-0", nil)
	send("bounty", "d-1", bounty)
	send("bounty", "d-1", bounty)
	send("bounty", "d-2", []byte(`{"id": 2}`))
	// Output:
	// 200 {"status":"OK"}
	// 202 {"status":"ACCEPTED"}
	// 200 {"status":"DUPLICATE"}
	// 400 {"status":"REJECTED","error":"malformed bounty: artifact_uri: missing (neither artifact_uri nor artifact_url given)"}
}

// Sign computes the signature header PolySwarm sends; a ping with an empty
// body is signed too.
func ExampleSign() {
	fmt.Println(webhook.Sign("s3cret", nil))
	fmt.Println(webhook.Verify("s3cret", []byte("{}"), webhook.Sign("s3cret", []byte("{}"))))
	fmt.Println(webhook.Verify("s3cret", []byte("{}"), webhook.Sign("other", []byte("{}"))))
	// Output:
	// 91dfac70c5348b04e1babb8b421ac92cec08b565b49ca16130dccb72503647b7
	// <nil>
	// webhook: signature does not match the body
}
