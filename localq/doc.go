// Package localq is a durable psengine.Broker for one machine: jobs are
// recorded in a bbolt store, normally in the engine's state directory
// (envdirs.Dirs.State), so that a bounty answered 202 survives the process.
//
// # Promises
//
//   - Submit returns once the job is committed (bbolt syncs the file before
//     a commit returns). Concurrent writes share commits (bbolt's DB.Batch,
//     with at most 1 ms of batching delay), so the cost of a sync is spread
//     over the jobs that arrive together.
//   - Jobs not settled when the process stops, or is killed, are delivered
//     again by the next Open, with the attempt count and the answer kept
//     (KeepAnswer) they had; jobs whose bounty expired meanwhile are
//     removed and reported (Config.OnExpired, a warning naming each).
//   - Delivery follows psenginetest.TestBroker like the MemoryBroker's:
//     at least once, redelivery with backoff and the attempt raised, dead
//     letters after Config.MaxAttempts or a permanent error.
//   - A job whose handling ends the process (an os.Exit or fatal error in
//     a scanner) does not crash every restart forever: a job recovered at
//     Open is marked running, synced, before a consumer takes it, and the
//     next Open counts a marked job as a failed attempt, dead-lettering it
//     (wrapping psengine.ErrWorkerDied) after Config.MaxAttempts. So such a
//     job ends the process at most MaxAttempts+1 times (its first ending,
//     in the run that accepted it, is not counted: jobs of a run's own
//     intake are not marked, which costs them no extra write). Dead letters
//     are logged as errors.
//   - A job whose ID or Key (psengine.BountyKey) was taken is dropped, until
//     the bounty's expiration (psengine.KeyRetention), across restarts: a
//     signed body replayed under new delivery ids is scanned once.
//   - The store does not grow without bound: settled jobs are removed, IDs
//     and keys are forgotten after their bounty's expiration, and only the
//     newest Config.DeadLetters dead letters are kept.
//
// # Lifecycle
//
// Open the store, give the broker to the engine (psengine.WithBroker) and
// serve it (Engine.Serve). To stop: Close (no new jobs; recorded ones are
// still delivered), Drain (wait for them) within a deadline, then cancel
// the consumers (jobs handed back stay recorded) or Abandon, and Release to
// close the file. Recorded lists what the next Open will deliver.
//
// One process at a time has a store open; Open waits Config.LockTimeout
// for another, then fails with ErrLocked.
package localq
