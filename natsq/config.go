package natsq

import (
	"cmp"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/polyswarm/psengine/pipeline"
)

// Defaults of the Config fields.
const (
	DefaultPrefix      = "psengine"
	DefaultDuplicates  = 10 * time.Minute
	DefaultAckWait     = 30 * time.Second
	DefaultMaxAttempts = 5
	DefaultArtifactTTL = 24 * time.Hour
	DefaultResultTTL   = time.Hour
	DefaultKeyTTL      = 24 * time.Hour
	DefaultResultGrace = 30 * time.Second
	// pullWait bounds one pull request: an idle process asks again this
	// often (the server forgets the request of a process gone at once).
	pullWait = 5 * time.Second
)

// Config configures a Broker. The zero value is usable: every field has a
// default. All processes sharing a queue should use the same Config, since
// Provision makes the server's streams and consumer match the one it is
// given (the last to provision wins).
type Config struct {
	// Prefix names what Provision creates (default "psengine"): the job
	// stream PREFIX_jobs (subject PREFIX.jobs), the dead-letter stream
	// PREFIX_dead (subject PREFIX.dead), the durable consumer
	// PREFIX_workers, the object store PREFIX_artifacts and the key-value
	// buckets PREFIX_results, PREFIX_answered, PREFIX_keys and
	// PREFIX_state. Letters, digits, '-' and '_' only. Distinct prefixes
	// are independent queues on one server.
	Prefix string

	// Duplicates is the deduplication window: a job whose ID was
	// submitted less than this long ago is dropped by the server, even if
	// it was handled meanwhile (default 10 minutes).
	Duplicates time.Duration
	// AckWait is how long the server waits for a worker's answer (or
	// heartbeat) before it hands the job to another worker: the time a
	// killed worker's jobs take to move on (default 30s).
	AckWait time.Duration
	// Heartbeat is how often a running handler tells the server the job is
	// still in progress, resetting AckWait (default AckWait/3; it must be
	// shorter than AckWait).
	Heartbeat time.Duration
	// MaxAttempts is how many failed attempts a job gets before its last
	// call, and how many times it may end its worker process while scanned
	// alone (default 5); see the package documentation. Deliveries cut
	// short by our own stop (hand-backs) are not attempts.
	MaxAttempts int
	// Backoff is the delay before a job whose handler failed is delivered
	// again: Backoff.Delay(attempt) after attempt number attempt failed
	// (zero value: 100ms doubling up to 30s, with jitter; its MaxAttempts
	// is not used).
	Backoff pipeline.Backoff
	// Capacity caps the jobs queued (not yet acknowledged); Submit answers
	// psengine.ErrQueueFull beyond it. 0 means no cap.
	Capacity int64

	// Storage is where the server keeps streams and buckets (the zero
	// value is jetstream.FileStorage: queued jobs survive a server
	// restart).
	Storage jetstream.StorageType
	// Replicas is the replication factor in a cluster (default 1).
	Replicas int

	// ArtifactTTL is how long a staged artifact may stay in the object
	// store when no worker removes it (its bounty was dead-lettered, or
	// its worker died after answering) (default 24h).
	ArtifactTTL time.Duration
	// ResultTTL is how long results for submitters and the answered
	// markers that stop a redelivered job from being answered twice are
	// kept (default 1h).
	ResultTTL time.Duration
	// KeyTTL is how long the content keys of submitted bounties
	// (broker.Job.Key: the same bounty under another job ID is refused)
	// are remembered, and the longest a job's record (its attempts, kept
	// answer...) is kept (default 24h; at least as long as a bounty may
	// take to expire).
	KeyTTL time.Duration
	// ResultGrace is how long Analyze waits for answers past the latest
	// expiration of its bounties (default 30s). After it, unanswered
	// bounties are reported with ErrNoAnswer.
	ResultGrace time.Duration

	// Logger receives the broker's records (default: discard).
	Logger *slog.Logger
	// OnDeadLetter, when set, is called in the consumer's goroutine after
	// each job this process dead-letters.
	OnDeadLetter func(DeadLetter)
}

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// withDefaults validates c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	c.Prefix = cmp.Or(c.Prefix, DefaultPrefix)
	if !prefixRE.MatchString(c.Prefix) {
		return c, fmt.Errorf("%w: Prefix %q: letters, digits, '-' and '_' only", ErrBadConfig, c.Prefix)
	}
	c.Duplicates = cmp.Or(c.Duplicates, DefaultDuplicates)
	c.AckWait = cmp.Or(c.AckWait, DefaultAckWait)
	c.Heartbeat = cmp.Or(c.Heartbeat, c.AckWait/3)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, DefaultMaxAttempts)
	c.Replicas = cmp.Or(c.Replicas, 1)
	c.ArtifactTTL = cmp.Or(c.ArtifactTTL, DefaultArtifactTTL)
	c.ResultTTL = cmp.Or(c.ResultTTL, DefaultResultTTL)
	c.KeyTTL = cmp.Or(c.KeyTTL, DefaultKeyTTL)
	c.ResultGrace = cmp.Or(c.ResultGrace, DefaultResultGrace)
	c.Logger = cmp.Or(c.Logger, slog.New(slog.DiscardHandler))
	switch {
	case c.Duplicates < 0, c.AckWait < 0, c.Heartbeat < 0, c.ArtifactTTL < 0, c.ResultTTL < 0, c.ResultGrace < 0:
		return c, fmt.Errorf("%w: negative duration", ErrBadConfig)
	case c.Heartbeat >= c.AckWait:
		return c, fmt.Errorf("%w: Heartbeat %v must be shorter than AckWait %v", ErrBadConfig, c.Heartbeat, c.AckWait)
	case c.MaxAttempts < 1:
		return c, fmt.Errorf("%w: MaxAttempts %d: need at least 1", ErrBadConfig, c.MaxAttempts)
	case c.Capacity < 0:
		return c, fmt.Errorf("%w: Capacity %d is negative", ErrBadConfig, c.Capacity)
	case c.Replicas < 1:
		return c, fmt.Errorf("%w: Replicas %d: need at least 1", ErrBadConfig, c.Replicas)
	}
	return c, nil
}

// names are the server-side names derived from the prefix.
type names struct {
	jobs, jobSubject  string
	dead, deadSubject string
	consumer          string
	artifacts         string
	results, answered string
	keys, state       string
}

func namesFor(prefix string) names {
	return names{
		jobs:        prefix + "_jobs",
		jobSubject:  prefix + ".jobs",
		dead:        prefix + "_dead",
		deadSubject: prefix + ".dead",
		consumer:    prefix + "_workers",
		artifacts:   prefix + "_artifacts",
		results:     prefix + "_results",
		answered:    prefix + "_answered",
		keys:        prefix + "_keys",
		state:       prefix + "_state",
	}
}
