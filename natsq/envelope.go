package natsq

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/polyswarm/psengine"
)

// A job on the wire is the bounty in PolySwarm's documented form as the
// message body (readable with any NATS tool), and headers:
//
//	Nats-Msg-Id     the job ID (the server deduplicates on it)
//	Natsq-Version   the format, "1"
//	Natsq-Reply     where the answer goes, when anywhere
//
// The response URL travels outside the bounty because it may be a result
// key (ResultScheme), which the bounty parser rightly refuses from
// PolySwarm.
const (
	HeaderVersion = "Natsq-Version"
	HeaderReply   = "Natsq-Reply"
	HeaderKey     = "Natsq-Key" // psengine.Job.Key, when set
)

const envelopeVersion = "1"

// ResultScheme is the scheme of response URLs that return an answer to a
// submitter through the results bucket (see Analyze): natsq-result:KEY.
const ResultScheme = "natsq-result"

// maxJobSize bounds a job message (a bounty is a few hundred bytes; its
// metadata may be larger).
const maxJobSize = 1 << 20

// encodeJob writes job as message headers and body.
func encodeJob(job psengine.Job) (nats.Header, []byte, error) {
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
	if job.ID == "" || strings.ContainsAny(job.ID+reply+job.Key, "\r\n") {
		return nil, nil, fmt.Errorf("%w: job id %q, key %q or response URL %q cannot be a header", psengine.ErrMalformedBounty, job.ID, job.Key, reply)
	}
	h := nats.Header{}
	h.Set(jetstream.MsgIDHeader, job.ID)
	h.Set(HeaderVersion, envelopeVersion)
	if reply != "" {
		h.Set(HeaderReply, reply)
	}
	if job.Key != "" {
		h.Set(HeaderKey, job.Key)
	}
	return h, body, nil
}

// decodeJob reads a message written by encodeJob. Errors wrap
// ErrMalformedJob (and psengine.ErrMalformedBounty for a bad bounty).
func decodeJob(h nats.Header, body []byte) (psengine.Job, error) {
	if v := h.Get(HeaderVersion); v != envelopeVersion {
		return psengine.Job{}, fmt.Errorf("%w: version %q, want %q", ErrMalformedJob, v, envelopeVersion)
	}
	id := h.Get(jetstream.MsgIDHeader)
	if id == "" {
		return psengine.Job{}, fmt.Errorf("%w: no job id", ErrMalformedJob)
	}
	if len(body) > maxJobSize {
		return psengine.Job{}, fmt.Errorf("%w: %d bytes", ErrMalformedJob, len(body))
	}
	b, err := psengine.ParseBounty(body)
	if err != nil {
		return psengine.Job{}, fmt.Errorf("%w: %w", ErrMalformedJob, err)
	}
	if reply := h.Get(HeaderReply); reply != "" {
		if err := checkReply(reply); err != nil {
			return psengine.Job{}, fmt.Errorf("%w: %w", ErrMalformedJob, err)
		}
		b.ResponseURL = reply
	}
	return psengine.Job{ID: id, Key: h.Get(HeaderKey), Bounty: b}, nil
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
