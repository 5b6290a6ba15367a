package natsq

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/polyswarm/psengine"
)

// A job on the wire is the bounty in PolySwarm's documented form as the
// message body (readable with any NATS tool), and headers:
//
//	Nats-Msg-Id     what the server deduplicates on: the job ID (a
//	                requeued dead letter's: the job ID and the dead letter)
//	Natsq-Job-Id    the job ID (a message without it: Nats-Msg-Id)
//	Natsq-Version   the format, "1"
//	Natsq-Reply     where the answer goes, when anywhere
//	Natsq-Key       broker.Job.Key, when set
//	Natsq-Accepted  broker.Job.Accepted (RFC 3339), when set
//	Natsq-Answer    the answer a requeued dead letter kept, if any
//
// The response URL travels outside the bounty because it may be a result
// key (ResultScheme), which the bounty parser rightly refuses from
// PolySwarm. A job's attempt, suspicion, last call and kept answer change
// from one delivery to the next, which a message cannot: they are the
// broker's records in the state bucket (see state.go), keyed by the
// message's stream sequence.
const (
	HeaderVersion  = "Natsq-Version"
	HeaderReply    = "Natsq-Reply"
	HeaderKey      = "Natsq-Key"
	HeaderAccepted = "Natsq-Accepted"
	HeaderAnswer   = "Natsq-Answer"
)

const envelopeVersion = "1"

// ResultScheme is the scheme of response URLs that return an answer to a
// submitter through the results bucket (see Analyze): natsq-result:KEY.
const ResultScheme = "natsq-result"

// maxJobSize bounds a job message (a bounty is a few hundred bytes; its
// metadata may be larger).
const maxJobSize = 1 << 20

// encodeJob writes job as message headers and body, with the job ID as
// the message ID (see encodeJobAs).
func encodeJob(job broker.Job) (nats.Header, []byte, error) { return encodeJobAs(job, job.ID) }

// encodeJobAs writes job as message headers and body, with msgID as the
// ID the server deduplicates on. The job's Answer travels too (a requeued
// dead letter's); its Attempt, Suspect and Final do not.
func encodeJobAs(job broker.Job, msgID string) (nats.Header, []byte, error) {
	b := job.Bounty
	reply := b.ResponseURL
	b.ResponseURL = ""
	body, err := json.Marshal(b)
	if err != nil {
		return nil, nil, fmt.Errorf("natsq: encode bounty %s: %w", job.Bounty.ID, err)
	}
	if len(body) > maxJobSize {
		return nil, nil, fmt.Errorf("%w: job %s is %d bytes, more than %d", psengine.ErrMalformedBounty, job.ID, len(body), maxJobSize)
	}
	if job.ID == "" || strings.ContainsAny(job.ID+reply+job.Key+msgID, "\r\n") {
		return nil, nil, fmt.Errorf("%w: job id %q, key %q or response URL %q cannot be a header", psengine.ErrMalformedBounty, job.ID, job.Key, reply)
	}
	h := nats.Header{}
	h.Set(jetstream.MsgIDHeader, msgID)
	h.Set(HeaderJobID, job.ID)
	h.Set(HeaderVersion, envelopeVersion)
	if reply != "" {
		h.Set(HeaderReply, reply)
	}
	if job.Key != "" {
		h.Set(HeaderKey, job.Key)
	}
	if !job.Accepted.IsZero() {
		h.Set(HeaderAccepted, job.Accepted.UTC().Format(time.RFC3339Nano))
	}
	if job.Answer != nil {
		a, err := json.Marshal(*job.Answer) // Analysis's own JSON: every field
		if err != nil {
			return nil, nil, fmt.Errorf("natsq: encode the answer of job %s: %w", job.ID, err)
		}
		h.Set(HeaderAnswer, string(a))
	}
	return h, body, nil
}

// decodeJob reads a message written by encodeJob. Errors wrap
// ErrMalformedJob (and psengine.ErrMalformedBounty for a bad bounty).
func decodeJob(h nats.Header, body []byte) (broker.Job, error) {
	if v := h.Get(HeaderVersion); v != envelopeVersion {
		return broker.Job{}, fmt.Errorf("%w: version %q, want %q", ErrMalformedJob, v, envelopeVersion)
	}
	id := cmp.Or(h.Get(HeaderJobID), h.Get(jetstream.MsgIDHeader))
	if id == "" {
		return broker.Job{}, fmt.Errorf("%w: no job id", ErrMalformedJob)
	}
	if len(body) > maxJobSize {
		return broker.Job{}, fmt.Errorf("%w: %d bytes", ErrMalformedJob, len(body))
	}
	b, err := psengine.ParseBounty(body)
	if err != nil {
		return broker.Job{}, fmt.Errorf("%w: %w", ErrMalformedJob, err)
	}
	if reply := h.Get(HeaderReply); reply != "" {
		if err := checkReply(reply); err != nil {
			return broker.Job{}, fmt.Errorf("%w: %w", ErrMalformedJob, err)
		}
		b.ResponseURL = reply
	}
	job := broker.Job{ID: id, Key: h.Get(HeaderKey), Bounty: b}
	if v := h.Get(HeaderAccepted); v != "" {
		if job.Accepted, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return broker.Job{}, fmt.Errorf("%w: accepted %q: %w", ErrMalformedJob, v, err)
		}
		job.Accepted = job.Accepted.UTC()
	}
	if v := h.Get(HeaderAnswer); v != "" {
		var a psengine.Analysis
		if err := json.Unmarshal([]byte(v), &a); err != nil {
			return broker.Job{}, fmt.Errorf("%w: answer: %w", ErrMalformedJob, err)
		}
		job.Answer = &a
	}
	return job, nil
}

// checkReply accepts http(s) URLs and result keys.
func checkReply(reply string) error {
	if key, ok := strings.CutPrefix(reply, ResultScheme+":"); ok {
		if !validKey(key) {
			return fmt.Errorf("reply %q: bad result key", reply)
		}
		return nil
	}
	u, err := url.Parse(reply)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("reply %q is neither an http(s) URL nor a %s: key", reply, ResultScheme)
	}
	return nil
}

// validKey tells whether s can be a key of a key-value bucket.
func validKey(s string) bool {
	if s == "" || len(s) > 256 || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '-', r == '_', r == '=', r == '.', r == '/':
		default:
			return false
		}
	}
	return true
}
