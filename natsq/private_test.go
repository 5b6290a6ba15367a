package natsq_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/google/go-cmp/cmp"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/deliver"
	"github.com/polyswarm/psengine/natsq"
	"github.com/polyswarm/psengine/psenginetest"
)

// artifactServer serves EICAR on loopback and counts the requests it gets.
type artifactServer struct {
	*httptest.Server
	hits atomic.Int64
}

func newArtifactServer(t *testing.T) *artifactServer {
	s := &artifactServer{}
	body := psenginetest.EICAR()
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.hits.Add(1)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

// privateAddressRun submits an http artifact on 127.0.0.1 and a staged one
// to a worker made with wopts, and returns their results and how many
// requests reached the artifact server.
func privateAddressRun(t *testing.T, prefix string, wopts ...natsq.WorkerOption) ([]psengine.Result, int64) {
	t.Helper()
	srv := startServer(t, "")
	cfg := fastConfig()
	cfg.Prefix = prefix
	submitter := newBroker(t, connect(t, srv), cfg)
	serveWorker(t, newBroker(t, connect(t, srv), cfg), engineScanner(), wopts)

	web := newArtifactServer(t)
	if !strings.HasPrefix(web.URL, "http://127.0.0.1:") {
		t.Fatalf("artifact server at %s, want 127.0.0.1", web.URL)
	}
	eicarBytes := psenginetest.EICAR()
	reqs := []natsq.Request{
		{Bounty: psengine.LocalBounty(psengine.FileArtifact, web.URL+"/sample", sha(eicarBytes), "", time.Now(), time.Hour)},
		localRequest("staged.com", eicarBytes),
	}
	got := slices.Collect(submitter.Analyze(context.Background(), reqs))
	if len(got) != len(reqs) {
		t.Fatalf("%d results, want %d", len(got), len(reqs))
	}
	for i, r := range got {
		if r.Err != nil {
			t.Errorf("result %d: %v", i, r.Err)
		}
	}
	return got, web.hits.Load()
}

// By default a worker does not connect to a loopback artifact: the bounty
// is answered unknown, SKIPPED:CANNOT-FETCH, saying why; a staged artifact,
// read from the object store, is scanned as usual.
func TestWorkerRefusesPrivateArtifactsByDefault(t *testing.T) {
	got, hits := privateAddressRun(t, "public-only")
	want := []summary{
		{ID: got[0].Bounty.ID.String(), Answered: true, Verdict: psengine.Unknown},
		{ID: got[1].Bounty.ID.String(), Answered: true, Verdict: psengine.Malicious, Family: "EICAR-Test-File"},
	}
	if diff := cmp.Diff(want, summarize(got)); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	md := got[0].Analysis.Metadata
	if diff := cmp.Diff([]string{psengine.CommentCannotFetch}, md.Comments); diff != "" {
		t.Errorf("loopback artifact comments (-want +got):\n%s", diff)
	}
	if !strings.Contains(md.Error, "127.0.0.1 is not a public address") {
		t.Errorf("loopback artifact: metadata.error %q does not name the private address", md.Error)
	}
	if hits != 0 {
		t.Errorf("the artifact server got %d requests, want none", hits)
	}
}

// AllowPrivate lets a development worker fetch from loopback.
func TestWorkerAllowPrivateFetchesLoopback(t *testing.T) {
	got, hits := privateAddressRun(t, "allow-private", natsq.AllowPrivate())
	want := []summary{
		{ID: got[0].Bounty.ID.String(), Answered: true, Verdict: psengine.Malicious, Family: "EICAR-Test-File"},
		{ID: got[1].Bounty.ID.String(), Answered: true, Verdict: psengine.Malicious, Family: "EICAR-Test-File"},
	}
	if diff := cmp.Diff(want, summarize(got)); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if hits != 1 {
		t.Errorf("the artifact server got %d requests, want 1", hits)
	}
}

// By default a worker does not POST an answer into its own network either:
// the delivery to a loopback response URL fails at once, for good, is
// reported to the error hooks, and the job is acknowledged, not redelivered
// until the bounty expires.
func TestWorkerRefusesPrivateResponseURLByDefault(t *testing.T) {
	srv := startServer(t, "")
	sink := newAnswerSink(t)
	nc := connect(t, srv)
	cfg := fastConfig()
	cfg.Prefix = "public-answers"
	b := newBroker(t, nc, cfg)
	settled := make(chan error, 10) // nil: answered and delivered
	serveWorker(t, b, engineScanner(), nil,
		psengine.OnError(func(_ context.Context, res psengine.Result) { settled <- res.Err }),
		psengine.OnSuccess(func(context.Context, psengine.Result) { settled <- nil }))

	bounty := psenginetest.Bounty(psenginetest.EICAR(), psenginetest.WithResponseURL(sink.URL+"/answer"),
		psenginetest.WithExpiration(time.Now().Add(time.Hour)))
	if err := b.Submit(context.Background(), broker.Job{ID: bounty.ID.String(), Bounty: bounty}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-settled:
		if err == nil {
			t.Fatalf("the answer was delivered to %s", sink.URL)
		}
		if !errors.Is(err, psengine.ErrDeliver) || !errors.Is(err, psengine.ErrPermanent) || !errors.Is(err, deliver.ErrNotPublic) {
			t.Errorf("reported %v, want ErrDeliver, ErrPermanent and deliver.ErrNotPublic", err)
		}
		if !strings.Contains(err.Error(), "not a public address: 127.0.0.1") {
			t.Errorf("reported %q, which does not name the address", err)
		}
	case <-time.After(time.Minute): // a bound, should the worker never settle the bounty
		t.Fatal("the bounty was not settled")
	}
	waitFor(t, "the job to be acknowledged", func() bool { return queued(t, nc, "public-answers") == 0 && ackPending(t, nc, "public-answers") == 0 })
	if n := sink.count(); n != 0 {
		t.Errorf("the loopback response URL received %d answers, want none", n)
	}
	if n := len(settled); n != 0 {
		t.Errorf("the bounty was settled %d more times: the job was retried", n)
	}
}
