package localq

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
	bolt "go.etcd.io/bbolt"
)

func sampleJobs() []broker.Job {
	b := psenginetest.Bounty([]byte("sample"), psenginetest.WithID("18446744073709551617"),
		psenginetest.WithResponseURL("https://api.example/answer"))
	vote := psenginetest.Bounty([]byte("vote"), psenginetest.WithID("3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
		psenginetest.WithPhase(psengine.Arbitration), psenginetest.WithURI("https://artifacts.example/x"))
	vote.Duration, vote.TaskedAt = 1500*time.Millisecond, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	return []broker.Job{
		{ID: "delivery-1", Key: broker.BountyKey(b), Attempt: 1, Bounty: b},
		{ID: "v", Key: broker.BountyKey(vote), Attempt: 3, Bounty: vote, Answer: &psengine.Analysis{
			Verdict: psengine.Suspicious, Confidence: 0.5, Score: 60, Likelihood: 70,
			Metadata: psengine.Metadata{Comments: []string{"a"}, Extra: map[string]any{"k": "v"}}}},
	}
}

// A record reads back as the job it was written from.
func TestRecordRoundTrip(t *testing.T) {
	for _, job := range sampleJobs() {
		for _, scanning := range []bool{false, true} {
			want := stored{job: job, scanning: scanning, crashes: job.Attempt - 1}
			data, err := encodeJob(want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeJob(data)
			if err != nil {
				t.Fatalf("decode %s: %v", data, err)
			}
			if got.scanning != want.scanning || got.crashes != want.crashes {
				t.Errorf("%s: scanning %v, crashes %d; want %v, %d", data, got.scanning, got.crashes, want.scanning, want.crashes)
			}
			if diff := cmp.Diff(want.job, got.job, psenginetest.BountyOptions, psenginetest.AnalysisOptions); diff != "" {
				t.Errorf("round trip of %s (-want +got):\n%s", job.ID, diff)
			}
		}
	}
}

// A record of the previous version reads as its job; its running mark is a
// scanning one.
func TestRecordVersion1(t *testing.T) {
	b := psenginetest.Bounty([]byte("v1"), psenginetest.WithID("1"))
	bounty, err := b.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeJob([]byte(`{"v":1,"id":"d-1","key":"k","attempt":2,"bounty":` + string(bounty) + `,"running":true}`))
	if err != nil {
		t.Fatal(err)
	}
	want := broker.Job{ID: "d-1", Key: "k", Attempt: 2, Bounty: b}
	if diff := cmp.Diff(want, got.job, psenginetest.BountyOptions); diff != "" || !got.scanning {
		t.Errorf("version 1 record: scanning %v, (-want +got):\n%s", got.scanning, diff)
	}
}

// decodeJob never panics, and what it accepts writes and reads back the
// same.
func FuzzDecodeJob(f *testing.F) {
	for _, j := range sampleJobs() {
		data, err := encodeJob(stored{job: j, scanning: j.Attempt > 1, crashes: 1})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"v":1,"id":"x","attempt":1,"bounty":{}}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		first, err := decodeJob(data)
		if err != nil {
			return
		}
		again, err := encodeJob(first)
		if err != nil {
			return // a value JSON cannot write (NaN in metadata, say) is dropped at write time
		}
		back, err := decodeJob(again)
		if err != nil {
			t.Fatalf("re-encoded record %s does not decode: %v", again, err)
		}
		if back.scanning != first.scanning || back.crashes != first.crashes {
			t.Errorf("scanning %v, crashes %d read back as %v, %d", first.scanning, first.crashes, back.scanning, back.crashes)
		}
		// A bounty's Warnings are what its parse noticed (a sha256 that is
		// not a string, say), not part of it: its encoding leaves them out.
		ignoreWarnings := cmpopts.IgnoreFields(psengine.Bounty{}, "Warnings")
		if diff := cmp.Diff(first.job, back.job, psenginetest.BountyOptions, psenginetest.AnalysisOptions, ignoreWarnings); diff != "" {
			t.Errorf("second round trip differs (-first +second):\n%s", diff)
		}
	})
}

// seenDecode never panics, and reads back what seenValue wrote.
func FuzzSeenDecode(f *testing.F) {
	f.Add(seenValue("delivery-1", "1/abc/assertion"))
	f.Add(seenValue("x", ""))
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, v []byte) {
		id, key, ok := seenDecode(v)
		if !ok {
			return
		}
		if id == "" {
			t.Fatalf("decoded an empty id from %x", v)
		}
		if id2, key2, ok := seenDecode(seenValue(id, key)); !ok || id2 != id || key2 != key {
			t.Errorf("round trip of (%q, %q): (%q, %q, %v)", id, key, id2, key2, ok)
		}
	})
}

// A store written with version 2 records (a kept answer and a scanning
// mark inside the record) opens as it did, and version 3's own (answer and
// mark in buckets of their own) as well: a kept answer comes back with its
// job, not suspected; a mark without an answer makes a suspect; a job
// settled leaves nothing behind in any bucket.
func TestStoredStateAcrossVersions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	jobs := sampleJobs()
	kept, marked := jobs[1], jobs[0]
	// Written by hand as version 2 did.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketJobs)
		if err != nil {
			return err
		}
		for i, s := range []stored{{job: marked, scanning: true}, {job: kept}} {
			data, err := encodeJob(s)
			if err != nil {
				return err
			}
			data = bytes.Replace(data, []byte(`{"v":3,`), []byte(`{"v":2,`), 1)
			if err := b.Put(seqKey(uint64(i+1)), data); err != nil {
				return err
			}
		}
		return nil
	})
	_ = db.Close()
	if err != nil {
		t.Fatal(err)
	}
	check := func(q *Broker) {
		t.Helper()
		got, err := q.Recorded(t.Context())
		if err != nil || len(got) != 2 {
			t.Fatalf("recorded %d jobs, %v; want 2", len(got), err)
		}
		if got[0].ID != marked.ID || !got[0].Suspect || got[0].Answer != nil {
			t.Errorf("the job marked scanning: suspect %v, answer %v; want a suspect without answer", got[0].Suspect, got[0].Answer)
		}
		if diff := cmp.Diff(kept.Answer, got[1].Answer, psenginetest.AnalysisOptions); diff != "" || got[1].Suspect {
			t.Errorf("the kept answer, suspect %v (-want +got):\n%s", got[1].Suspect, diff)
		}
	}
	for range 2 { // version 2's records, then as rewritten by the first Open
		q, err := Open(path, WithClock(Config{}, func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }))
		if err != nil {
			t.Fatal(err)
		}
		check(q)
		q.Close()
		if err := q.Release(); err != nil {
			t.Fatal(err)
		}
	}
	// Settled, a job leaves no answer or mark behind.
	db, err = bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketAnswers).Stats().KeyN; n != 0 {
			t.Errorf("%d answers in their bucket after the first Open, want 0 (version 2 kept it in the record)", n)
		}
		if err := tx.Bucket(bucketMarks).Put(seqKey(2), []byte{}); err != nil {
			return err
		}
		if err := putJob(tx, seqKey(2), stored{job: kept}); err != nil {
			return err
		}
		if tx.Bucket(bucketAnswers).Get(seqKey(2)) == nil || tx.Bucket(bucketMarks).Get(seqKey(2)) != nil {
			t.Error("putJob: want the answer in its bucket and no mark")
		}
		if err := deleteJob(tx, seqKey(2)); err != nil {
			return err
		}
		for _, name := range [][]byte{bucketJobs, bucketAnswers, bucketMarks} {
			if tx.Bucket(name).Get(seqKey(2)) != nil {
				t.Errorf("deleteJob left the job in %s", name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
