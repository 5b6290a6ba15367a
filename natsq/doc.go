// Package natsq is a broker.Broker on NATS JetStream: the same engine
// binary runs on many machines sharing one queue, and no bounty is lost
// when a worker dies.
//
// It lives in its own module so that psengine itself has no NATS
// dependency. Subpackage embedded runs a NATS server inside the process
// (durable intake on one machine, no install step); subpackage natscli
// plugs the broker into the example host CLI as `--backend nats`.
//
// # Use
//
// The host owns the connection (authentication, TLS, reconnects):
//
//	nc, err := nats.Connect(url, nats.UserCredentials(creds), nats.MaxReconnects(-1))
//	b, err := natsq.New(nc, natsq.Config{})
//	err = b.Provision(ctx) // idempotent: streams, consumer, buckets
//
//	// intake, anywhere:
//	engine := psengine.New(scanner, psengine.WithBroker(b))
//	err = engine.Submit(ctx, bounty)
//
//	// workers, anywhere:
//	engine := psengine.New(scanner, append(b.WorkerOptions(), psengine.WithBroker(b), psengine.WithWorkers(4))...)
//	err = engine.Serve(ctx)
//
//	// a worker's stop: no new job; those running finish until the
//	// deadline, then are handed back; then nothing is left held
//	err = engine.Shutdown(deadline)
//	err = b.Drain(ctx)
//	nc.Close()
//
// # What the server holds
//
// Provision creates, from Config.Prefix (default "psengine"):
//
//   - PREFIX_jobs, a work-queue stream on subject PREFIX.jobs: one message
//     per job, the bounty as PolySwarm documents it for a body, and the
//     envelope in headers (see envelope.go): the job ID as Nats-Msg-Id (so
//     the server drops a job ID seen within Config.Duplicates, default 10
//     minutes) and Natsq-Job-Id, where the answer goes (Natsq-Reply), the
//     content key (Natsq-Key), when intake took it (Natsq-Accepted);
//   - PREFIX_workers, the durable pull consumer every worker shares, with
//     explicit acknowledgement and Config.AckWait (default 30s);
//   - PREFIX_dead, the dead-letter stream: the job as queued, on a subject
//     of its own (PREFIX.dead.HASH), with headers Natsq-Job-Id,
//     Natsq-Reason, Natsq-Attempts, Natsq-Deliveries, Natsq-Permanent and
//     the answer it kept (Natsq-Answer);
//   - PREFIX_artifacts, an object store for artifacts staged by submitters
//     (kept at most Config.ArtifactTTL, default 24h);
//   - PREFIX_results and PREFIX_answered, key-value buckets for answers
//     waiting for their submitter and for answered markers (kept
//     Config.ResultTTL, default 1h);
//   - PREFIX_keys, the content keys of the bounties submitted (kept
//     Config.KeyTTL, default 24h);
//   - PREFIX_state, what a job's deliveries cannot carry: its attempts,
//     suspicion, last call and kept answer (one record per job message
//     that needs one, removed when it is settled), and each worker
//     process's scans in progress (see below).
//
// # Guarantees
//
// natsq follows the rules every psengine broker follows
// (psenginetest.TestBroker holds it to them, as it does broker.Memory
// and localq):
//
//   - Every submitted job is delivered at least once. Submit returns once
//     the server stored the job (file storage by default: it survives a
//     server restart); a job whose ID or content key (broker.Job.Key)
//     was taken is refused with psengine.ErrDuplicate.
//   - A job is acknowledged only after its handler returned nil, which for
//     an Engine is after the answer was delivered. While it is held, an
//     InProgress heartbeat every Config.Heartbeat (default AckWait/3)
//     keeps it from other workers however long the scan takes; if the
//     worker dies, the heartbeats stop and the server hands the job to
//     another worker after AckWait.
//   - A consumer whose context is done takes no new job. A job whose
//     handler fails while its consumer's context is done (our own stop:
//     Shutdown's deadline) is handed back at once, its attempt not raised.
//   - Any other failure raises the attempt (broker.Job.Attempt) and
//     delivers the job again after Config.Backoff, up to
//     Config.MaxAttempts (default 5); the job that fails its last attempt
//     gets a last call (broker.Job.Final: the engine answers it unknown
//     without scanning), then is dead-lettered with that reason whatever
//     its handler returns. An error wrapping psengine.ErrPermanent
//     dead-letters it at once; a message that is not a job too.
//   - A job whose scan ends its worker process is charged for it, and the
//     jobs that process held beside it are not. The server counts every
//     delivery alike, so natsq records each delivery a worker ends without
//     an acknowledgement (a failure, a hand-back) before ending it; a
//     delivery nothing accounts for lapsed: its worker died. natsq is a
//     broker.ScanMarker: each worker process keeps in PREFIX_state the
//     list of the deliveries it is scanning (written before each scan
//     starts; a scan's mark ends when its answer is kept). A lapsed
//     delivery found marked died scanning: the job comes back a suspect
//     (broker.Job.Suspect, which the engine handles alone), its attempt
//     unchanged; a suspect found marked again died alone, which counts a
//     death, and after MaxAttempts deaths it gets its last call (reason:
//     psengine.ErrWorkerDied) and is dead-lettered. A lapsed delivery not
//     marked was only held (waiting for a worker, or behind a suspect): it
//     comes back as it was. Lapses never marked (a death before the scan,
//     workers that keep losing their connection, the process backend,
//     whose children's deaths are charged by the engine) still end in a
//     last call after twice MaxAttempts of them.
//   - Close stops intake and this process's taking of jobs (the jobs that
//     arrive for no consumer are handed back); Drain waits until the
//     process holds none. Call both before closing the connection.
//   - The consumers of one process (an engine runs WithInFlight of them)
//     share one inbox and one pull request, sized to the consumers
//     waiting: jobs come in batches, not one round trip each.
//
// Dead letters can be listed, requeued (as new, attempt 1, with the answer
// they kept) and dropped: natsq.Broker is a broker.DeadLetterStore, and
// `ENGINE deadletters --backend nats` acts on them. Each carries a
// *DeadLetterError with the reason.
//
// # One answer per bounty
//
// An answer made is kept (broker.AnswerKeeper) before it is delivered: a
// job whose worker stopped or died during the delivery comes back with it,
// and is delivered again without a second scan.
//
// A worker killed after delivering an answer but before its acknowledgement
// reached the server would leave the job to be delivered again. The
// Deliverer (part of WorkerOptions) therefore records an answered marker
// (keyed by bounty id and destination) right after each delivered answer,
// and a redelivered job whose marker exists is acknowledged without calling
// the handler; so is any job whose bounty was already answered at the same
// response URL, such as a bounty PolySwarm sent twice under two delivery
// ids (the marker lasts Config.ResultTTL). A second answer needs the worker to die in the window
// between the answer being accepted (the HTTP 2xx, or the result stored)
// and the marker being stored: one key-value write, well under a
// millisecond on a local network, against scans that take milliseconds to
// minutes. If the marker write fails the answer stands and a warning is
// logged. Answers to submitters (Analyze) are idempotent anyway: the same
// key is written again.
//
// # Artifacts and results for submitters
//
// Analyze is the `analyze --backend nats` flow: it submits one job per
// request and waits for the answers through the results bucket (each
// bounty's response URL becomes natsq-result:KEY, see ResultScheme),
// yielding them in request order. A request with Content (a path or stdin
// read on the submitter's machine) is staged in the object store and its
// bounty points at natsobj://BUCKET/NAME (ArtifactScheme), which workers
// open through the fetch.Opener that FetchPolicy registers; the worker
// removes the object once the job is acknowledged. http(s) and data:
// artifacts travel as they are; a worker fetches them with a PublicOnly
// policy (an artifact on a loopback, private or link-local address is
// answered SKIPPED:CANNOT-FETCH) unless its WorkerOptions were given
// AllowPrivate, for development; the same option lets a worker POST
// answers to a response URL on such an address, which it otherwise
// refuses for good. Analyze stops waiting at the latest
// expiration of its bounties plus Config.ResultGrace, or when its context
// ends; bounties that were dead-lettered, expired before a worker took
// them, or not answered in time come back with a typed error.
package natsq
