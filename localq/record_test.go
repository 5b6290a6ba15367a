package localq

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/psenginetest"
)

func sampleJobs() []psengine.Job {
	b := psenginetest.Bounty([]byte("sample"), psenginetest.WithID("18446744073709551617"),
		psenginetest.WithResponseURL("https://api.example/answer"))
	vote := psenginetest.Bounty([]byte("vote"), psenginetest.WithID("3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
		psenginetest.WithPhase(psengine.Arbitration), psenginetest.WithURI("https://artifacts.example/x"))
	vote.Duration, vote.TaskedAt = 1500*time.Millisecond, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	return []psengine.Job{
		{ID: "delivery-1", Key: psengine.BountyKey(b), Attempt: 1, Bounty: b},
		{ID: "v", Key: psengine.BountyKey(vote), Attempt: 3, Bounty: vote, Answer: &psengine.Analysis{
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
	want := psengine.Job{ID: "d-1", Key: "k", Attempt: 2, Bounty: b}
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
		if diff := cmp.Diff(first.job, back.job, psenginetest.BountyOptions, psenginetest.AnalysisOptions); diff != "" {
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
