// Package natsq is a psengine.Broker on NATS JetStream: the same engine
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
// # What the server holds
//
// Provision creates, from Config.Prefix (default "psengine"):
//
//   - PREFIX_jobs, a work-queue stream on subject PREFIX.jobs: one message
//     per job, the bounty as PolySwarm documents it for a body, the job ID
//     as Nats-Msg-Id (so the server drops a job ID seen within
//     Config.Duplicates, default 10 minutes), where the answer goes as
//     Natsq-Reply, and Natsq-Version;
//   - PREFIX_workers, the durable pull consumer every worker shares, with
//     explicit acknowledgement and Config.AckWait (default 30s);
//   - PREFIX_dead, the dead-letter stream: the job as queued, with headers
//     Natsq-Job-Id, Natsq-Reason, Natsq-Deliveries and Natsq-Permanent;
//   - PREFIX_artifacts, an object store for artifacts staged by submitters
//     (kept at most Config.ArtifactTTL, default 24h);
//   - PREFIX_results and PREFIX_answered, key-value buckets for answers
//     waiting for their submitter and for answered markers (kept
//     Config.ResultTTL, default 1h).
//
// # Guarantees
//
// Every submitted job is delivered at least once. Each Consume keeps one
// inbox and sends its own pull requests, one outstanding at a time. Submit returns once the
// server stored the job (file storage by default: it survives a server
// restart). Each consumer asks for one job when it is free; while a job
// runs, it may take one more job that was already waiting in the queue
// (never one an idle worker's pending pull would get), kept alive by the
// running job's heartbeats (Config.NoPrefetch turns this off). A job is
// acknowledged only after its handler returned nil, which for an Engine is
// after the answer was delivered. While the handler runs, an InProgress heartbeat
// every Config.Heartbeat (default AckWait/3) keeps the job from other
// workers however long the scan takes; if the worker dies, the heartbeats
// stop and the server hands the job to another worker after AckWait.
//
// A handler error wrapping psengine.ErrPermanent dead-letters the job at
// once. Any other error redelivers it after Config.Backoff, with
// Job.Attempt (the server's delivery count) raised, up to
// Config.MaxAttempts (default 5) deliveries; then it is dead-lettered. A
// job whose handlers never return (it kills its workers) is dead-lettered,
// without another handler call, on the delivery after MaxAttempts. When a
// consumer's context ends mid-job, the job is handed back at once. A
// message that is not a job is dead-lettered as permanent. DeadLetters
// lists the dead-letter stream with each reason (*DeadLetterError).
//
// # One answer per bounty
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
