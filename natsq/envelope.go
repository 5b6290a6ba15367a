package natsq

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/polyswarm/psengine"
)

// envelope is a job on the wire: the bounty in PolySwarm's documented form
// and, apart from it, where its answer goes. The response URL travels
// outside the bounty because it may be a result key (ResultScheme), which
// the bounty parser rightly refuses from PolySwarm.
type envelope struct {
	Version int             `json:"v"`
	JobID   string          `json:"job"`
	Bounty  json.RawMessage `json:"bounty"`
	Reply   string          `json:"reply,omitempty"`
}

const envelopeVersion = 1

// ResultScheme is the scheme of response URLs that return an answer to a
// submitter through the results bucket (see Analyze): natsq-result:KEY.
const ResultScheme = "natsq-result"

// maxJobSize bounds a job message (a bounty is a few hundred bytes; its
// metadata may be larger).
const maxJobSize = 1 << 20

// encodeJob writes job as a message body.
func encodeJob(job psengine.Job) ([]byte, error) {
	b := job.Bounty
	reply := b.ResponseURL
	b.ResponseURL = ""
	raw, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("natsq: encode bounty %s: %w", job.Bounty.ID, err)
	}
	// The envelope by hand: json.Marshal would re-validate and compact the
	// bounty it just wrote.
	id, _ := json.Marshal(job.ID) // strings always marshal
	data := make([]byte, 0, len(raw)+len(id)+len(reply)+48)
	data = fmt.Appendf(data, `{"v":%d,"job":%s,"bounty":`, envelopeVersion, id)
	data = append(data, raw...)
	if reply != "" {
		r, _ := json.Marshal(reply)
		data = append(append(data, `,"reply":`...), r...)
	}
	data = append(data, '}')
	if len(data) > maxJobSize {
		return nil, fmt.Errorf("%w: job %s is %d bytes, more than %d", psengine.ErrMalformedBounty, job.ID, len(data), maxJobSize)
	}
	return data, nil
}

// decodeJob reads a message body written by encodeJob. Errors wrap
// ErrMalformedJob (and psengine.ErrMalformedBounty for a bad bounty).
func decodeJob(data []byte) (psengine.Job, error) {
	if len(data) > maxJobSize {
		return psengine.Job{}, fmt.Errorf("%w: %d bytes", ErrMalformedJob, len(data))
	}
	var env envelope
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&env); err != nil {
		return psengine.Job{}, fmt.Errorf("%w: %w", ErrMalformedJob, err)
	}
	if dec.More() {
		return psengine.Job{}, fmt.Errorf("%w: trailing data", ErrMalformedJob)
	}
	if env.Version != envelopeVersion {
		return psengine.Job{}, fmt.Errorf("%w: version %d, want %d", ErrMalformedJob, env.Version, envelopeVersion)
	}
	if env.JobID == "" {
		return psengine.Job{}, fmt.Errorf("%w: no job id", ErrMalformedJob)
	}
	b, err := psengine.ParseBounty(env.Bounty)
	if err != nil {
		return psengine.Job{}, fmt.Errorf("%w: %w", ErrMalformedJob, err)
	}
	if env.Reply != "" {
		if err := checkReply(env.Reply); err != nil {
			return psengine.Job{}, fmt.Errorf("%w: %w", ErrMalformedJob, err)
		}
		b.ResponseURL = env.Reply
	}
	return psengine.Job{ID: env.JobID, Bounty: b}, nil
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
