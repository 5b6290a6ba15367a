// Package localq is a durable broker.Broker for one machine: jobs are
// recorded in a bbolt store, normally in the engine's state directory
// (envdirs.Dirs.State), so that a bounty answered 202 survives the process.
//
// # Promises
//
//   - Submit returns once the job is committed (bbolt syncs the file before
//     a commit returns). Concurrent writes share commits (bbolt's DB.Batch,
//     with at most 4 ms of batching delay), so the cost of a sync is spread
//     over the writes that arrive together. Marking a scan and keeping an
//     answer write a few bytes (buckets of their own), not the job again.
//   - Jobs not settled when the process stops, or is killed, are delivered
//     again by the next Open, with the attempt count and the answer kept
//     (KeepAnswer) they had; jobs whose bounty expired meanwhile are
//     removed and reported (Config.OnExpired, a warning naming each).
//   - Delivery follows psenginetest.TestBroker like broker.Memory's (the
//     two share one dispatcher): at least once; a failure raises the
//     attempt and redelivers with backoff; a job handed back because its
//     consumer stopped (Shutdown's deadline) costs no attempt and stays
//     recorded as it was; after Config.MaxAttempts failures a job gets a
//     last call (answered unknown by the engine, without a scan) and is
//     dead-lettered; a permanent error dead-letters at once.
//   - A job whose scan ends the process (an os.Exit or fatal error in a
//     scanner) is charged for it, and its neighbours are not. The engine
//     marks a job scanning (broker.ScanMarker) before its scan and the
//     mark ends when its answer is kept. The next Open makes each job it
//     finds marked a suspect (broker.Job.Suspect), which the engine
//     handles alone; no attempt is counted. A suspect found marked died
//     alone: that counts, and after Config.MaxAttempts such deaths the job
//     gets its last call (broker.Job.Final, wrapping
//     psengine.ErrWorkerDied's message) and is dead-lettered. Dead letters
//     are logged as errors, and can be listed, requeued and dropped
//     (broker.DeadLetterStore).
//   - A job whose ID or Key (broker.BountyKey) was taken is dropped, until
//     the bounty's expiration (broker.KeyRetention), across restarts: a
//     signed body replayed under new delivery ids is scanned once.
//   - The store does not grow without bound: settled jobs are removed, IDs
//     and keys are forgotten after their bounty's expiration, and only the
//     newest Config.DeadLetters dead letters are kept.
//
// # Lifecycle
//
// Open the store, give the broker to the engine (psengine.WithBroker) and
// serve it (Engine.Serve). To stop: Engine.Shutdown with a deadline (it
// closes the broker, drains it, and past the deadline cuts the jobs in
// progress short: they are handed back and stay recorded), then Release to
// close the file. Recorded lists what the next Open will deliver.
//
// One process at a time has a store open; Open waits Config.LockTimeout
// for another, then fails with ErrLocked.
package localq
