package natsq

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/bid"
)

var _ psengine.AnswerKeeper = (*Broker)(nil)

// kvKey turns an ID or a content key into a KV key (any text: hashed).
func kvKey(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// keptRecord is an answer as the kept bucket holds it.
type keptRecord struct {
	Verdict    psengine.Verdict  `json:"verdict"`
	Confidence float64           `json:"confidence,omitempty"`
	Score      float64           `json:"score,omitempty"`
	Likelihood bid.Likelihood    `json:"likelihood,omitempty"`
	Bid        int64             `json:"bid"`
	Metadata   psengine.Metadata `json:"metadata"`
}

// KeepAnswer keeps answer for the redeliveries of job, which this process
// must be handling: should its delivery not finish (the worker stops or
// dies), the job comes back with Job.Answer set, to be delivered again
// without a scan. The answer is dropped when the job is acknowledged or
// dead-lettered, or after Config.KeyTTL. See psengine.AnswerKeeper.
func (b *Broker) KeepAnswer(ctx context.Context, job psengine.Job, answer psengine.Analysis) error {
	if _, ok := b.handling.Load(job.ID); !ok {
		return fmt.Errorf("natsq: keep the answer of job %s: this process is not handling it", job.ID)
	}
	kv, err := b.keptKV(ctx)
	if err != nil {
		return err
	}
	data, err := json.Marshal(keptRecord{Verdict: answer.Verdict, Confidence: answer.Confidence, Score: answer.Score,
		Likelihood: answer.Likelihood, Bid: answer.Bid, Metadata: answer.Metadata})
	if err != nil {
		return fmt.Errorf("natsq: keep the answer of job %s: %w", job.ID, err)
	}
	if _, err := kv.Put(ctx, kvKey(job.ID), data); err != nil {
		return fmt.Errorf("natsq: keep the answer of job %s: %w", job.ID, err)
	}
	b.keeping.Store(job.ID, struct{}{})
	return nil
}

// keptAnswer returns the answer kept for job id, if any.
func (b *Broker) keptAnswer(ctx context.Context, id string) *psengine.Analysis {
	kv, err := b.keptKV(ctx)
	if err == nil {
		var e jetstream.KeyValueEntry
		if e, err = kv.Get(ctx, kvKey(id)); err == nil {
			var r keptRecord
			if err = json.Unmarshal(e.Value(), &r); err == nil {
				return &psengine.Analysis{Verdict: r.Verdict, Confidence: r.Confidence, Score: r.Score,
					Likelihood: r.Likelihood, Bid: r.Bid, Metadata: r.Metadata}
			}
		}
	}
	if !errors.Is(err, jetstream.ErrKeyNotFound) {
		b.log.Warn("reading a kept answer failed; the job is scanned again", "job", id, "err", err)
	}
	return nil
}

// forgetAnswer drops the answer this process kept for job id, if any.
func (b *Broker) forgetAnswer(id string) {
	if _, ok := b.keeping.LoadAndDelete(id); !ok {
		return
	}
	if kv, err := b.keptKV(context.Background()); err == nil {
		_ = kv.Delete(context.Background(), kvKey(id))
	}
}
