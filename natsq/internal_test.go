package natsq

import (
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
)

func TestHeartbeatBeatsUntilStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var beats atomic.Int64
		stop := heartbeat(10*time.Second, func() error { beats.Add(1); return errors.New("ignored") })
		time.Sleep(35 * time.Second)
		synctest.Wait()
		if got := beats.Load(); got != 3 {
			t.Errorf("after 35s at 10s: %d beats, want 3", got)
		}
		stop()
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := beats.Load(); got != 3 {
			t.Errorf("beats after stop: %d, want still 3", got)
		}
	})
}

func TestEnvelopeRoundTrip(t *testing.T) {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)
	for _, reply := range []string{"", "https://example.test/answer?x=1", ResultScheme + ":run.7"} {
		b := psenginetest.Bounty([]byte("content"), psenginetest.WithID("12345678901234567890123"), psenginetest.WithExpiration(exp))
		b.ResponseURL = reply
		answer := psengine.Analysis{Verdict: psengine.Malicious, Confidence: 0.5, Score: 0.25, Bid: 7,
			Metadata: psengine.Metadata{MalwareFamily: "Kept", Comments: []string{"requeued"}}}
		job := broker.Job{ID: "job-1", Key: "key/1", Bounty: b, Attempt: 3, Suspect: true, Final: "given up",
			Accepted: time.Date(2029, 12, 31, 23, 59, 58, 123456789, time.UTC), Answer: &answer}
		h, body, err := encodeJobAs(job, "job-1#requeue.9")
		if h.Get(jetstream.MsgIDHeader) != "job-1#requeue.9" {
			t.Errorf("message id %q", h.Get(jetstream.MsgIDHeader))
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := psengine.ParseBounty(body); err != nil {
			t.Errorf("the body is not a plain bounty: %v", err)
		}
		got, err := decodeJob(h, body)
		if err != nil {
			t.Fatalf("reply %q: %v", reply, err)
		}
		// Attempt, suspicion and last call are the state bucket's, not the
		// message's.
		job.Attempt, job.Suspect, job.Final = 0, false, ""
		if diff := cmp.Diff(job, got, psenginetest.BountyOptions, psenginetest.AnalysisOptions); diff != "" {
			t.Errorf("reply %q: round trip (-want +got):\n%s", reply, diff)
		}
	}
}

func TestDecodeJobRejects(t *testing.T) {
	good, body, err := encodeJob(broker.Job{ID: "j", Bounty: psenginetest.Bounty([]byte("x"))})
	if err != nil {
		t.Fatal(err)
	}
	with := func(kv ...string) nats.Header {
		h := nats.Header{}
		for key, vals := range good {
			h[key] = append([]string(nil), vals...)
		}
		for i := 0; i < len(kv); i += 2 {
			if k, v := kv[i], kv[i+1]; v == "" {
				h.Del(k)
			} else {
				h.Set(k, v)
			}
		}
		return h
	}
	cases := map[string]struct {
		h    nats.Header
		body string
	}{
		"not json":      {good, "hello"},
		"trailing":      {good, string(body) + "{}"},
		"no version":    {with(HeaderVersion, ""), string(body)},
		"wrong version": {with(HeaderVersion, "2"), string(body)},
		"no job id":     {with(jetstream.MsgIDHeader, "", HeaderJobID, ""), string(body)},
		"bad accepted":  {with(HeaderAccepted, "yesterday"), string(body)},
		"bad answer":    {with(HeaderAnswer, `{"verdict":`), string(body)},
		"empty bounty":  {good, "{}"},
		"bad reply":     {with(HeaderReply, "file:///etc/passwd"), string(body)},
		"bad key":       {with(HeaderReply, ResultScheme+":a..b"), string(body)},
	}
	for name, c := range cases {
		if _, err := decodeJob(c.h, []byte(c.body)); !errors.Is(err, ErrMalformedJob) {
			t.Errorf("%s: err = %v, want ErrMalformedJob", name, err)
		}
	}
	if _, _, err := encodeJob(broker.Job{ID: "a\nb", Bounty: psenginetest.Bounty([]byte("x"))}); !errors.Is(err, psengine.ErrMalformedBounty) {
		t.Errorf("a job id with a newline: %v, want ErrMalformedBounty", err)
	}
}

func FuzzDecodeJob(f *testing.F) {
	answer := `{"verdict":"malicious","confidence":0.5,"score":0.25,"bid":7,"metadata":{"malware_family":"Kept"}}`
	for _, reply := range []string{"", "https://h/x", ResultScheme + ":k.1"} {
		b := psenginetest.Bounty([]byte("seed"))
		b.ResponseURL = reply
		h, body, err := encodeJob(broker.Job{ID: "seed", Bounty: b})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body, "seed", reply, h.Get(HeaderAccepted), h.Get(HeaderAnswer))
	}
	f.Add([]byte(`{}`), "x", "", "", "")
	f.Add([]byte(`{"id":1,"artifact_type":"URL","artifact_uri":"https://x"}`), "1", "natsq-result:r.1",
		"2030-01-02T03:04:05.123456789Z", answer)
	f.Add([]byte(`{"id":1,"artifact_type":"URL","artifact_uri":"https://x"}`), "1", "", "2030-01-02T03:04:05+02:00", `{"verdict":"x"}`)
	f.Fuzz(func(t *testing.T, body []byte, id, reply, accepted, answer string) {
		h := nats.Header{}
		h.Set(HeaderVersion, envelopeVersion)
		h.Set(jetstream.MsgIDHeader, id)
		h.Set(HeaderReply, reply)
		h.Set(HeaderAccepted, accepted)
		h.Set(HeaderAnswer, answer)
		job, err := decodeJob(h, body)
		if err != nil {
			if !errors.Is(err, ErrMalformedJob) {
				t.Fatalf("error %v does not wrap ErrMalformedJob", err)
			}
			return
		}
		// What decodes re-encodes and decodes to the same job.
		h2, body2, err := encodeJob(job)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", job, err)
		}
		job2, err := decodeJob(h2, body2)
		if err != nil {
			t.Fatalf("decode of re-encoded job: %v", err)
		}
		// A bounty's Warnings are what its parse noticed (a sha256 that is
		// not a string, say), not part of it: its encoding leaves them out.
		ignoreWarnings := cmpopts.IgnoreFields(psengine.Bounty{}, "Warnings")
		if diff := cmp.Diff(job, job2, psenginetest.BountyOptions, psenginetest.AnalysisOptions, ignoreWarnings); diff != "" {
			t.Fatalf("unstable round trip (-first +second):\n%s", diff)
		}
	})
}

func TestConfigDefaultsAndErrors(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Prefix != DefaultPrefix || c.AckWait != DefaultAckWait || c.Heartbeat != DefaultAckWait/3 ||
		c.MaxAttempts != DefaultMaxAttempts || c.Duplicates != DefaultDuplicates || c.Replicas != 1 {
		t.Errorf("defaults: %+v", c)
	}
	for name, bad := range map[string]Config{
		"prefix":    {Prefix: "a.b"},
		"heartbeat": {AckWait: time.Second, Heartbeat: time.Second},
		"attempts":  {MaxAttempts: -1},
		"capacity":  {Capacity: -1},
		"negative":  {Duplicates: -time.Second},
	} {
		if _, err := bad.withDefaults(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: err = %v, want ErrBadConfig", name, err)
		}
	}
}

func TestDeadLetterErrorMatches(t *testing.T) {
	perm := &DeadLetterError{Reason: "bad", Deliveries: 1, Permanent: true}
	if !errors.Is(perm, ErrDeadLettered) || !errors.Is(perm, psengine.ErrPermanent) {
		t.Errorf("%v should match ErrDeadLettered and ErrPermanent", perm)
	}
	gaveUp := &DeadLetterError{Reason: "flaky", Deliveries: 5}
	if !errors.Is(gaveUp, ErrDeadLettered) || errors.Is(gaveUp, psengine.ErrPermanent) {
		t.Errorf("%v should match ErrDeadLettered only", gaveUp)
	}
}

func TestValidKey(t *testing.T) {
	for key, want := range map[string]bool{
		"run.1": true, "a-b_c=d/e": true, "": false, ".a": false, "a.": false, "a..b": false, "a b": false, "a*": false, "a>": false,
	} {
		if got := validKey(key); got != want {
			t.Errorf("validKey(%q) = %v, want %v", key, got, want)
		}
	}
}

func TestDeliveryFactsFromTheAckSubject(t *testing.T) {
	type facts struct {
		Delivered int
		Seq       uint64
	}
	for subject, want := range map[string]facts{
		"$JS.ACK.psengine_jobs.psengine_workers.3.41.40.1700000000000000000.7":               {3, 41},
		"$JS.ACK.hub.ACCHASH.psengine_jobs.psengine_workers.1.9.9.1700000000000000000.0.xyz": {1, 9},
	} {
		d, err := newDelivery(&nats.Msg{Reply: subject})
		if err != nil {
			t.Errorf("%s: %v", subject, err)
			continue
		}
		if diff := cmp.Diff(want, facts{d.delivered, d.seq}); diff != "" {
			t.Errorf("%s (-want +got):\n%s", subject, diff)
		}
	}
	for _, bad := range []string{"", "_INBOX.x", "$JS.ACK.s.c.x.1.1.1.1", "$JS.API.s.c.1.1.1.1.1"} {
		if _, err := newDelivery(&nats.Msg{Reply: bad}); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
