package natsq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/pipeline"
)

// Dead letters are messages of the dead-letter stream, one subject per job
// (PREFIX.dead.HASH of the job ID), so that an operator's requeue or drop
// finds a job's without reading the stream.

func (b *Broker) deadSubject(id string) string { return b.names.deadSubject + "." + kvKey(id) }

// deadLetter moves a job to the dead-letter stream with the reason, and
// tells its submitter when it waits for a result. If the dead-letter
// stream cannot take it, the job stays queued and comes back later.
func (b *Broker) deadLetter(ctx context.Context, hd *held, why *DeadLetterError) {
	msg, job := hd.d, hd.job
	log := b.log.With("job", job.ID)
	dm := &nats.Msg{Subject: b.deadSubject(job.ID), Data: msg.Data(), Header: nats.Header{}}
	for _, k := range []string{HeaderVersion, HeaderReply, HeaderKey, HeaderAccepted, HeaderAnswer} {
		if v := msg.Headers().Get(k); v != "" {
			dm.Header.Set(k, v)
		}
	}
	if a := hd.st.Answer; a != nil {
		if data, err := json.Marshal(a); err == nil {
			dm.Header.Set(HeaderAnswer, string(data))
		}
	}
	dm.Header.Set(HeaderJobID, job.ID)
	dm.Header.Set(HeaderReason, truncate(why.Reason, 2048))
	dm.Header.Set(HeaderDeliveries, strconv.Itoa(why.Deliveries))
	dm.Header.Set(HeaderAttempts, strconv.Itoa(why.Attempts))
	dm.Header.Set(HeaderPermanent, strconv.FormatBool(why.Permanent))
	// One dead letter per queued message, even if this worker dies before
	// removing it from the job stream and another one gives up on it again.
	dm.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s#%d", job.ID, msg.seq))
	if _, err := b.js.PublishMsg(ctx, dm); err != nil {
		log.Error("dead-lettering failed; the job stays queued", "err", err, "reason", why.Reason)
		_ = msg.NakWithDelay(b.cfg.Backoff.Delay(max(job.Attempt, 1)))
		return
	}
	if err := msg.Term(); err != nil {
		log.Warn("removing a dead-lettered job failed; it may be dead-lettered again (deduplicated)", "err", err)
	}
	b.dropState(ctx, hd)
	log.Error("job given up on (dead-lettered)", "bounty", job.Bounty.ID.String(), "reason", why.Reason,
		"attempts", why.Attempts, "deliveries", why.Deliveries, "permanent", why.Permanent)
	b.reportToSubmitter(ctx, job.Bounty, kindDead, why.Error())
	if b.cfg.OnDeadLetter != nil {
		job.Attempt = why.Attempts
		dl := DeadLetter{Job: job, Err: why, At: time.Now().UTC()}
		if err := pipeline.Protect(func() { b.cfg.OnDeadLetter(dl) }); err != nil {
			log.Error("OnDeadLetter panicked", "err", err)
		}
	}
}

// DeadLetters returns the jobs in the dead-letter stream, oldest first, each
// with a *DeadLetterError as its Err, the attempts it had as its
// Job.Attempt, the answer it kept (if any) as its Job.Answer, and when it
// was given up on as At. A message that is not a readable job comes back
// with only its ID. See broker.DeadLetterStore.
func (b *Broker) DeadLetters(ctx context.Context) ([]broker.DeadLetter, error) {
	st, err := b.js.Stream(ctx, b.names.dead)
	if err != nil {
		return nil, notProvisioned("stream "+b.names.dead, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("natsq: dead letters: %w", err)
	}
	var out []broker.DeadLetter
	if info.State.Msgs == 0 {
		return out, nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		raw, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("natsq: dead letter %d: %w", seq, err)
		}
		out = append(out, parseDeadLetter(raw))
	}
	return out, nil
}

func parseDeadLetter(raw *jetstream.RawStreamMsg) broker.DeadLetter {
	h := raw.Header
	why := &DeadLetterError{Reason: h.Get(HeaderReason)}
	why.Deliveries, _ = strconv.Atoi(h.Get(HeaderDeliveries))
	why.Permanent, _ = strconv.ParseBool(h.Get(HeaderPermanent))
	if n, err := strconv.Atoi(h.Get(HeaderAttempts)); err == nil {
		why.Attempts = n
	} else {
		why.Attempts = why.Deliveries // written before attempts were counted apart
	}
	job, err := decodeJob(h, raw.Data)
	if err != nil {
		job = broker.Job{ID: h.Get(HeaderJobID)}
	}
	job.Attempt = why.Attempts
	return broker.DeadLetter{Job: job, Err: why, At: raw.Time.UTC()}
}

// deadLetterOf returns the newest dead letter of job id.
func (b *Broker) deadLetterOf(ctx context.Context, id string) (jetstream.Stream, *jetstream.RawStreamMsg, error) {
	st, err := b.js.Stream(ctx, b.names.dead)
	if err != nil {
		return nil, nil, notProvisioned("stream "+b.names.dead, err)
	}
	raw, err := st.GetLastMsgForSubject(ctx, b.deadSubject(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil, fmt.Errorf("%w: %q", broker.ErrNoDeadLetter, id)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("natsq: dead letter %q: %w", id, err)
	}
	return st, raw, nil
}

// Requeue queues the job of the dead letter of job id again, as new
// (attempt 1, with the answer it kept, if any, to be delivered without a
// scan), and removes the dead letter; see broker.DeadLetterStore. A job
// whose bounty expired is not requeued. It returns psengine.ErrClosed
// after Close.
func (b *Broker) Requeue(ctx context.Context, id string) error {
	if b.closing.Err() != nil {
		return psengine.ErrClosed
	}
	st, raw, err := b.deadLetterOf(ctx, id)
	if err != nil {
		return err
	}
	d := parseDeadLetter(raw)
	if d.Job.Bounty.ID.IsZero() {
		return fmt.Errorf("natsq: requeue %q: the dead letter is not a readable job", id)
	}
	if d.Job.Bounty.Expired(time.Now()) {
		return fmt.Errorf("natsq: requeue %q: its bounty expired at %s", id, d.Job.Bounty.Expiration.Format(time.RFC3339))
	}
	// A message ID of its own: the job's ID is within the server's
	// duplicate window, and this dead letter is requeued once.
	h, body, err := encodeJobAs(d.Job, fmt.Sprintf("%s#requeue.%d", id, raw.Sequence))
	if err != nil {
		return err
	}
	if _, err := b.js.PublishMsg(ctx, &nats.Msg{Subject: b.names.jobSubject, Data: body, Header: h}); err != nil {
		return b.publishError(id, err)
	}
	if err := st.DeleteMsg(ctx, raw.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("natsq: requeue %q: queued, but removing the dead letter failed: %w", id, err)
	}
	return nil
}

// Drop removes the dead letter of job id; see broker.DeadLetterStore.
func (b *Broker) Drop(ctx context.Context, id string) error {
	st, raw, err := b.deadLetterOf(ctx, id)
	if err != nil {
		return err
	}
	if err := st.DeleteMsg(ctx, raw.Sequence); errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("%w: %q", broker.ErrNoDeadLetter, id)
	} else if err != nil {
		return fmt.Errorf("natsq: drop %q: %w", id, err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
