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
	for _, want := range sampleJobs() {
		for _, running := range []bool{false, true} {
			data, err := encodeJob(want, running)
			if err != nil {
				t.Fatal(err)
			}
			got, gotRunning, err := decodeJob(data)
			if err != nil {
				t.Fatalf("decode %s: %v", data, err)
			}
			if gotRunning != running {
				t.Errorf("%s: running %v, want %v", data, gotRunning, running)
			}
			if diff := cmp.Diff(want, got, psenginetest.BountyOptions, psenginetest.AnalysisOptions); diff != "" {
				t.Errorf("round trip of %s (-want +got):\n%s", want.ID, diff)
			}
		}
	}
}

// decodeJob never panics, and what it accepts writes and reads back the
// same.
func FuzzDecodeJob(f *testing.F) {
	for _, j := range sampleJobs() {
		data, err := encodeJob(j, j.Attempt > 1)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"v":1,"id":"x","attempt":1,"bounty":{}}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		job, running, err := decodeJob(data)
		if err != nil {
			return
		}
		again, err := encodeJob(job, running)
		if err != nil {
			return // a value JSON cannot write (NaN in metadata, say) is dropped at write time
		}
		back, backRunning, err := decodeJob(again)
		if err != nil {
			t.Fatalf("re-encoded record %s does not decode: %v", again, err)
		}
		if backRunning != running {
			t.Errorf("running %v read back as %v", running, backRunning)
		}
		if diff := cmp.Diff(job, back, psenginetest.BountyOptions, psenginetest.AnalysisOptions); diff != "" {
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
