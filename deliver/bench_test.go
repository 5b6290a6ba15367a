package deliver_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/polyswarm/psengine/deliver"
)

// BenchmarkPost compares Post against a bare http.Post loop sending the same
// body to the same loopback server over the same (default) transport; the
// ratio deliver/bare is the cost of the retry machinery on the happy path.
func BenchmarkPost(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"status":"ACCEPTED"}`)
	}))
	defer srv.Close()
	defer http.DefaultTransport.(*http.Transport).CloseIdleConnections()

	b.Run("bare_http.Post", func(b *testing.B) {
		for b.Loop() {
			resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(answer))
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
	b.Run("deliver.Post", func(b *testing.B) {
		c := &deliver.Client{}
		ctx := b.Context()
		for b.Loop() {
			if _, err := c.Post(ctx, srv.URL, answer, time.Now().Add(time.Minute)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPostPaired runs one bare http.Post and one deliver.Post per
// iteration, in alternating order, and times each, so load from other
// processes and any first-or-second position effect affect both alike. It
// reports their mean times and the ratio deliver/bare.
func BenchmarkPostPaired(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"status":"ACCEPTED"}`)
	}))
	defer srv.Close()
	defer http.DefaultTransport.(*http.Transport).CloseIdleConnections()

	postBare := func() time.Duration {
		t0 := time.Now()
		resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(answer))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(t0)
	}
	c := &deliver.Client{}
	// Delivery that outlives a request runs under context.WithoutCancel, as
	// the engine does it.
	ctx := context.WithoutCancel(b.Context())
	postDeliver := func() time.Duration {
		t0 := time.Now()
		if _, err := c.Post(ctx, srv.URL, answer, time.Now().Add(time.Minute)); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}

	var bare, ours time.Duration
	n := 0
	for b.Loop() {
		if n%2 == 0 {
			bare += postBare()
			ours += postDeliver()
		} else {
			ours += postDeliver()
			bare += postBare()
		}
		n++
	}
	b.ReportMetric(float64(bare.Nanoseconds())/float64(n), "bare-ns/op")
	b.ReportMetric(float64(ours.Nanoseconds())/float64(n), "deliver-ns/op")
	b.ReportMetric(float64(ours)/float64(bare), "ratio")
}

// instant is an in-memory transport answering 202 at once.
type instant struct{}

func (instant) RoundTrip(req *http.Request) (*http.Response, error) {
	io.Copy(io.Discard, req.Body)
	return &http.Response{
		StatusCode: http.StatusAccepted, Header: http.Header{}, Request: req,
		Body: io.NopCloser(strings.NewReader(`{"status":"ACCEPTED"}`)), ContentLength: 21,
	}, nil
}

// BenchmarkPostOverhead isolates the CPU cost Post adds around a request
// from network noise: the same in-memory transport behind a bare
// http.Client.Do and behind Post.
func BenchmarkPostOverhead(b *testing.B) {
	hc := &http.Client{Transport: instant{}}
	b.Run("bare_Do", func(b *testing.B) {
		for b.Loop() {
			req, err := http.NewRequest(http.MethodPost, answerURL, bytes.NewReader(answer))
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.Run("deliver.Post", func(b *testing.B) {
		c := &deliver.Client{HTTP: hc}
		ctx := context.WithoutCancel(b.Context())
		for b.Loop() {
			if _, err := c.Post(ctx, answerURL, answer, time.Now().Add(time.Minute)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
