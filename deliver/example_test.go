package deliver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/polyswarm/psengine/deliver"
	"github.com/polyswarm/psengine/pipeline"
)

func ExampleClient_Post() {
	// A response_url that is overloaded for its first request.
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Printf("received %s %s\n", r.Header.Get("Content-Type"), body)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()

	c := &deliver.Client{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, Margin: time.Second}
	expiration := time.Now().Add(time.Minute)
	rec, err := c.Post(context.Background(), srv.URL, []byte(`{"verdict":"benign","bid":62500000000000000}`), expiration)
	fmt.Println("err:", err)
	fmt.Println("attempts:", rec.Attempts, "status:", rec.Status)
	// Output:
	// received application/json {"verdict":"benign","bid":62500000000000000}
	// err: <nil>
	// attempts: 2 status: 202
}

func ExampleClient_publicOnly() {
	// A bounty whose response_url points into our own network.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("received an answer") // never printed
	}))
	defer srv.Close()

	c := &deliver.Client{PublicOnly: true}
	rec, err := c.Post(context.Background(), srv.URL+"/answer", []byte(`{"verdict":"benign"}`), time.Now().Add(time.Minute))
	fmt.Println("permanent:", errors.Is(err, pipeline.ErrPermanent), "not public:", errors.Is(err, deliver.ErrNotPublic))
	fmt.Println("attempts:", rec.Attempts, "status:", rec.Status)
	// Output:
	// permanent: true not public: true
	// attempts: 1 status: 0
}
