package natsq_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/fetch"
	"github.com/polyswarm/psengine/natsq"
	"github.com/polyswarm/psengine/psenginetest"
)

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// localRequest is an artifact read on the submitter's machine.
func localRequest(name string, content []byte) natsq.Request {
	return natsq.Request{
		Bounty:  psengine.LocalBounty(psengine.FileArtifact, "/submitter/only/"+name, sha(content), "application/octet-stream", time.Now(), time.Hour),
		Content: fetch.FromBytes(content),
	}
}

// summary is what a result says, for comparison.
type summary struct {
	ID       string
	Answered bool
	Verdict  psengine.Verdict
	Family   string
}

func summarize(results []psengine.Result) []summary {
	var out []summary
	for _, r := range results {
		out = append(out, summary{r.Bounty.ID.String(), r.Answered, r.Analysis.Verdict, r.Analysis.Metadata.MalwareFamily})
	}
	return out
}

func TestAnalyzeAnswersInOrderAndCleansUp(t *testing.T) {
	srv := startServer(t, "")
	nc := connect(t, srv)
	cfg := fastConfig()
	cfg.Prefix = "analyze"
	b := newBroker(t, nc, cfg)
	// The http artifact is on loopback: this worker is a development one.
	serveWorker(t, newBroker(t, connect(t, srv), cfg), engineScanner(), []natsq.WorkerOption{natsq.AllowPrivate()})

	eicarBytes := psenginetest.EICAR()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(eicarBytes) }))
	defer web.Close()
	benign := []byte("just some text")
	reqs := []natsq.Request{
		localRequest("eicar.com", eicarBytes),
		localRequest("notes.txt", benign),
		localRequest("eicar-again.com", eicarBytes), // same bounty id: still two answers
		{Bounty: psengine.LocalBounty(psengine.FileArtifact, psenginetest.DataURI(eicarBytes), sha(eicarBytes), "", time.Now(), time.Hour)},
		{Bounty: psengine.LocalBounty(psengine.FileArtifact, web.URL+"/sample", sha(eicarBytes), "", time.Now(), time.Hour)},
		{Bounty: psengine.LocalBounty(psengine.URLArtifact, "https://example.test/", sha([]byte("https://example.test/")), psengine.URIListType, time.Now(), time.Hour)},
	}
	got := slices.Collect(b.Analyze(context.Background(), reqs))
	var want []summary
	for i, r := range reqs {
		s := summary{ID: r.Bounty.ID.String(), Answered: true, Verdict: psengine.Malicious, Family: "EICAR-Test-File"}
		switch i {
		case 1:
			s.Verdict, s.Family = psengine.Unknown, ""
		case 5: // the EICAR engine takes files only
			s.Verdict, s.Family = psengine.Unknown, ""
		}
		want = append(want, s)
	}
	if diff := cmp.Diff(want, summarize(got)); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	for i, r := range got {
		if r.Err != nil {
			t.Errorf("result %d: %v", i, r.Err)
		}
		if r.Bounty.ArtifactURI != reqs[i].Bounty.ArtifactURI {
			t.Errorf("result %d carries URI %q, want the request's %q", i, r.Bounty.ArtifactURI, reqs[i].Bounty.ArtifactURI)
		}
	}
	if got[5].Analysis.Metadata.Comments[0] != "SKIPPED:TYPE-UNSUPPORTED" {
		t.Errorf("URL artifact: comments %v", got[5].Analysis.Metadata.Comments)
	}

	// Answered: the staged artifacts and the results are gone.
	js, _ := jetstream.New(nc)
	obj, err := js.ObjectStore(context.Background(), "analyze_artifacts")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the staged artifacts to be removed", func() bool {
		list, err := obj.List(context.Background())
		return errors.Is(err, jetstream.ErrNoObjectsFound) || (err == nil && len(list) == 0)
	})
	kv, err := js.KeyValue(context.Background(), "analyze_results")
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := kv.Keys(context.Background()); !errors.Is(err, jetstream.ErrNoKeysFound) {
		t.Errorf("results left after reading: %v (%v)", keys, err)
	}
}

func TestAnalyzeReportsBountiesWithoutAnswer(t *testing.T) {
	srv := startServer(t, "")
	nc := connect(t, srv)
	cfg := fastConfig()
	cfg.Prefix = "noanswer"
	cfg.ResultGrace = 2 * time.Second
	b := newBroker(t, nc, cfg)

	worker := newBroker(t, connect(t, srv), cfg)
	poison := psenginetest.Bounty([]byte("poison"), psenginetest.WithID("poison"), psenginetest.WithExpiration(time.Now().Add(time.Hour)))
	expired := psenginetest.Bounty([]byte("too late"), psenginetest.WithID("late"), psenginetest.WithExpiration(time.Now().Add(-time.Second)))
	// The engine answers everything but the poison bounty, which its
	// handler refuses for good.
	e := psengine.New(engineScanner(), append(worker.WorkerOptions(), psengine.WithBroker(worker))...)
	consumeInBackground(t, worker, func(ctx context.Context, j broker.Job) error {
		if j.Bounty.ID == poison.ID {
			return psengine.Permanent(errors.New("refused"))
		}
		_, _ = e.AnalyzeBounty(ctx, j.Bounty)
		return nil
	})
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })

	got := slices.Collect(b.Analyze(context.Background(), []natsq.Request{{Bounty: poison}, {Bounty: expired}}))
	if len(got) != 2 {
		t.Fatalf("%d results, want 2", len(got))
	}
	if got[0].Answered || !errors.Is(got[0].Err, natsq.ErrDeadLettered) {
		t.Errorf("poison: answered %v, err %v; want ErrDeadLettered", got[0].Answered, got[0].Err)
	}
	if got[1].Answered || !errors.Is(got[1].Err, psengine.ErrExpired) {
		t.Errorf("expired: answered %v, err %v; want ErrExpired", got[1].Answered, got[1].Err)
	}
}

func TestAnalyzeTimesOutWithoutWorkers(t *testing.T) {
	nc := connect(t, startServer(t, ""))
	cfg := fastConfig()
	cfg.ResultGrace = 100 * time.Millisecond
	b := newBroker(t, nc, cfg)
	bounty := psenginetest.Bounty([]byte("nobody scans me"), psenginetest.WithExpiration(time.Now().Add(100*time.Millisecond)))
	got := slices.Collect(b.Analyze(context.Background(), []natsq.Request{{Bounty: bounty}}))
	if len(got) != 1 || got[0].Answered || !errors.Is(got[0].Err, natsq.ErrNoAnswer) {
		t.Fatalf("got %+v, want one unanswered result with ErrNoAnswer", got)
	}

	// A caller's deadline ends the wait too.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	far := psenginetest.Bounty([]byte("far"), psenginetest.WithExpiration(time.Now().Add(time.Hour)))
	got = slices.Collect(b.Analyze(ctx, []natsq.Request{{Bounty: far}}))
	if len(got) != 1 || !errors.Is(got[0].Err, natsq.ErrNoAnswer) || !errors.Is(got[0].Err, context.DeadlineExceeded) {
		t.Fatalf("got %+v, want ErrNoAnswer with the deadline", got)
	}
}

func TestArtifactOpenerRefusesOtherBuckets(t *testing.T) {
	nc := connect(t, startServer(t, ""))
	b := newBroker(t, nc, fastConfig())
	p := b.FetchPolicy(fetch.Remote())
	_, err := p.Fetch(context.Background(), natsq.ArtifactScheme+"://someone_else/x", "")
	if !errors.Is(err, fetch.ErrNotAllowed) {
		t.Errorf("another bucket: %v, want ErrNotAllowed", err)
	}
	uri, err := b.StageArtifact(context.Background(), "here", bytes.NewReader([]byte("staged bytes")))
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Fetch(context.Background(), uri, sha([]byte("staged bytes")))
	if err != nil {
		t.Fatalf("fetch %s: %v", uri, err)
	}
	defer c.Close()
	if got, _ := c.Bytes(1 << 10); string(got) != "staged bytes" {
		t.Errorf("fetched %q", got)
	}
	if _, err := p.Fetch(context.Background(), uri+"-missing", ""); !errors.Is(err, fetch.ErrUnreachable) {
		t.Errorf("missing object: %v, want ErrUnreachable", err)
	}
}
