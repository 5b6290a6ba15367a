package webhook_test

import (
	"encoding/json"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/bid"
	"github.com/polyswarm/psengine/deliver"
	"github.com/polyswarm/psengine/psenginetest"
)

const responseURL = "http://polyswarm.test/v1/bounties/answer"

// wireAnswer decodes an answer as PolySwarm would, keeping the raw bid.
type wireAnswer struct {
	Verdict  string          `json:"verdict"`
	Bid      json.RawMessage `json:"bid"`
	Metadata struct {
		MalwareFamily string   `json:"malware_family"`
		Comments      []string `json:"comments"`
		Error         string   `json:"error"`
	} `json:"metadata"`
}

func decodeAnswer(t *testing.T, body string) wireAnswer {
	t.Helper()
	var a wireAnswer
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	return a
}

// integerBid returns the bid when it is a JSON integer within rules.
func integerBid(t *testing.T, raw json.RawMessage, rules bid.Rules) int64 {
	t.Helper()
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		t.Fatalf("bid %s: %v", raw, err)
	}
	v, err := n.Int64()
	if err != nil {
		t.Fatalf("bid %s is not a JSON integer: %v", raw, err)
	}
	if v < rules.Min || v > rules.Max {
		t.Fatalf("bid %d outside [%d, %d]", v, rules.Min, rules.Max)
	}
	return v
}

// Two 503s then a 200: three POSTs with growing backoff, exactly one
// accepted answer, nothing sent afterwards.
func TestAnswerAfterTwo503s(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil, []step{status(503), status(503), status(200)})
		t0 := time.Now()
		r.send("d-1", bountyJSON(t, "1", []byte("MALWARE sample"), psenginetest.WithResponseURL(responseURL),
			psenginetest.WithExpiration(t0.Add(5*time.Minute))))

		o := r.next()
		if o.Err != nil || o.Analysis.Verdict != psengine.Malicious {
			t.Fatalf("outcome %+v, want a malicious answer delivered", o)
		}
		r.quiet(10 * time.Minute) // past the expiration: nothing more
		log := r.receiver.log()
		var statuses []int
		for _, a := range log {
			statuses = append(statuses, a.Status)
		}
		if diff := cmp.Diff([]int{503, 503, 200}, statuses); diff != "" {
			t.Fatalf("attempts (-want +got):\n%s", diff)
		}
		// Equal-jitter backoff: [b/2, b] with b = 250ms, then 500ms.
		if d := log[1].At.Sub(log[0].At); d < deliver.DefaultMinBackoff/2 || d > deliver.DefaultMinBackoff {
			t.Errorf("first retry after %v, want within [125ms, 250ms]", d)
		}
		if d := log[2].At.Sub(log[1].At); d < deliver.DefaultMinBackoff || d > 2*deliver.DefaultMinBackoff {
			t.Errorf("second retry after %v, want within [250ms, 500ms]", d)
		}
		accepted := r.receiver.accepted()
		if len(accepted) != 1 {
			t.Fatalf("%d accepted answers, want 1", len(accepted))
		}
		a := decodeAnswer(t, accepted[0])
		if a.Verdict != "malicious" || a.Metadata.MalwareFamily != "Test.Marker" {
			t.Errorf("answer %s, want malicious Test.Marker", accepted[0])
		}
		integerBid(t, a.Bid, bid.DefaultRules)
		for _, at := range log {
			if at.Path != "/v1/bounties/answer" || at.Body != accepted[0] {
				t.Errorf("attempt %+v: want the same answer POSTed to the response URL each time", at)
			}
		}
	})
}

// A 400 is permanent: one attempt, reported, never retried.
func TestAnswerRejectedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil, []step{status(400)})
		r.send("d-1", bountyJSON(t, "1", []byte("benign"), psenginetest.WithResponseURL(responseURL),
			psenginetest.WithExpiration(time.Now().Add(5*time.Minute))))
		o := r.next()
		if !errors.Is(o.Err, psengine.ErrDeliver) || !errors.Is(o.Err, psengine.ErrPermanent) {
			t.Fatalf("error %v, want ErrDeliver and ErrPermanent", o.Err)
		}
		var se *deliver.StatusError
		if !errors.As(o.Err, &se) || se.Code != 400 {
			t.Errorf("error %v, want a *deliver.StatusError 400", o.Err)
		}
		r.quiet(10 * time.Minute)
		if n := len(r.receiver.log()); n != 1 {
			t.Errorf("%d attempts, want 1", n)
		}
		if n := len(r.scans()); n != 1 {
			t.Errorf("scanned %d times, want 1 (no redelivery of a permanent failure)", n)
		}
	})
}

// A receiver that hangs: the attempt times out, the retry gets through.
func TestAnswerAfterHangingReceiver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil, []step{hang, status(200)})
		r.send("d-1", bountyJSON(t, "1", []byte("MALWARE"), psenginetest.WithResponseURL(responseURL),
			psenginetest.WithExpiration(time.Now().Add(5*time.Minute))))
		if o := r.next(); o.Err != nil {
			t.Fatalf("outcome %+v, want delivered", o)
		}
		r.quiet(10 * time.Minute)
		log := r.receiver.log()
		if len(log) != 2 || log[0].Status != 0 || log[1].Status != 200 {
			t.Fatalf("attempts %+v, want a hung one then a 200", log)
		}
		d := log[1].At.Sub(log[0].At)
		lo, hi := deliver.DefaultAttemptTimeout+deliver.DefaultMinBackoff/2, deliver.DefaultAttemptTimeout+deliver.DefaultMinBackoff
		if d < lo || d > hi {
			t.Errorf("retry %v after the hung attempt, want within [%v, %v]", d, lo, hi)
		}
		if n := len(r.receiver.accepted()); n != 1 {
			t.Errorf("%d accepted answers, want 1", n)
		}
	})
}

// An arbitration bounty is answered with a vote: a verdict, no bid key.
func TestVoteHasNoBid(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil, []step{status(200)})
		r.send("d-1", bountyJSON(t, "1", []byte("MALWARE"), psenginetest.WithResponseURL(responseURL),
			psenginetest.WithPhase(psengine.Arbitration)))
		if o := r.next(); o.Err != nil {
			t.Fatalf("outcome %+v", o)
		}
		accepted := r.receiver.accepted()
		if len(accepted) != 1 {
			t.Fatalf("%d answers, want 1", len(accepted))
		}
		var keys map[string]json.RawMessage
		if err := json.Unmarshal([]byte(accepted[0]), &keys); err != nil {
			t.Fatal(err)
		}
		if _, ok := keys["bid"]; ok {
			t.Errorf("vote %s has a bid", accepted[0])
		}
		if a := decodeAnswer(t, accepted[0]); a.Verdict != "malicious" {
			t.Errorf("vote %s, want malicious", accepted[0])
		}
	})
}

// A repeated delivery is scanned and answered once: the broker refuses it.
func TestRepeatedDeliveryAnsweredOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil, []step{status(200)})
		body := bountyJSON(t, "1", []byte("MALWARE"), psenginetest.WithResponseURL(responseURL))
		r.send("d-1", body)
		if o := r.next(); o.Err != nil {
			t.Fatalf("outcome %+v", o)
		}
		got := serve(t, r.handler, signed("bounty", "d-1", body))
		if got.Code != 200 || got.Status != "DUPLICATE" {
			t.Fatalf("repeated delivery: %+v, want 200 DUPLICATE", got)
		}
		r.quiet(10 * time.Minute)
		if n, m := len(r.scans()), len(r.receiver.log()); n != 1 || m != 1 {
			t.Errorf("%d scans and %d answers, want 1 and 1", n, m)
		}
	})
}

// Bounties from the network may not reference local files: a file:// artifact
// is answered unknown with SKIPPED:CANNOT-FETCH, unless the host allows it.
func TestFileArtifactRefused(t *testing.T) {
	path := psenginetest.File(t, "sample", []byte("MALWARE"))
	uri := "file://" + path
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil, []step{status(200)})
		r.send("d-1", bountyJSON(t, "1", []byte("MALWARE"), psenginetest.WithURI(uri), psenginetest.WithResponseURL(responseURL)))
		o := r.next()
		if !errors.Is(o.Err, psengine.ErrFetch) {
			t.Fatalf("error %v, want ErrFetch", o.Err)
		}
		accepted := r.receiver.accepted()
		if len(accepted) != 1 {
			t.Fatalf("%d answers, want 1", len(accepted))
		}
		a := decodeAnswer(t, accepted[0])
		if a.Verdict != "unknown" || !hasComment(a.Metadata.Comments, psengine.CommentCannotFetch) || string(a.Bid) != "0" {
			t.Errorf("answer %s, want unknown, bid 0, %s", accepted[0], psengine.CommentCannotFetch)
		}
		if n := len(r.scans()); n != 0 {
			t.Errorf("scanned %d times, want 0", n)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil, []step{status(200)}, psengine.WithFetchPolicy(allowFiles()))
		r.send("d-1", bountyJSON(t, "1", []byte("MALWARE"), psenginetest.WithURI(uri), psenginetest.WithResponseURL(responseURL)))
		if o := r.next(); o.Err != nil || o.Analysis.Verdict != psengine.Malicious {
			t.Fatalf("outcome %+v, want malicious when the host allows files", o)
		}
	})
}
