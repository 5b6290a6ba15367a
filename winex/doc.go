// Package winex runs scanner programs, native or Windows ones under Wine, with
// deadlines that kill the whole process tree, bounded capture and decoding of
// their output, and helpers to read fields out of it.
//
// # One mechanism
//
// [Run] runs a [Cmd]: a program, its arguments, and optionally a [*Wine]. With
// Cmd.Wine nil the program runs natively (clamscan, yara); with a Wine it runs
// as `wine PROGRAM ARGS` in the Wine environment. Either way:
//
//   - the program leads a process group of its own; when the context ends,
//     the group gets SIGKILL and the program is reaped; when the program exits,
//     whatever it left in its group is killed too;
//   - Run never waits for processes that inherited the output pipes (Wine's
//     session processes, a daemon): once the program is gone, what it wrote is
//     drained and the pipes are closed;
//   - output is capped (Cmd.MaxOutput) and decoded to UTF-8 with "\n" line
//     endings ([Decode]: UTF-16LE with or without BOM, UTF-8, code page 1252,
//     detected or forced);
//   - a non-zero exit code is a result, not an error: scanners use it to say
//     "found".
//
// [Fields], [AllFields] and [Values] pull named groups (versions, detection
// names) out of the decoded output with regular expressions.
//
// # Wine
//
// [Discover] finds the loader, wineserver and winepath from WINELOADER,
// WINESERVER, WINEPATH_CMD and PATH, and the prefix from WINEPREFIX. On
// Windows it returns nil: programs then run directly through the same code.
// [Wine.Environ] sets WINEPREFIX, WINEDEBUG=-all, a UTF-8 locale and TZ.
// Initialising a prefix is an explicit, slow step ([Wine.InitPrefix], 9-25 s);
// Run refuses an uninitialised prefix rather than let Wine create one on the
// first scan.
//
// A run without a wineserver alive costs 0.5-1.5 s, mostly starting the
// server and Wine's session processes; [Wine.StartServer] (engine setup)
// starts a persistent server once, in its own session so that a scan's kill
// does not reach it, and [Wine.StopServer] (teardown) stops it. Runs on one
// prefix may overlap.
//
// [Wine.ToWindows] and [Wine.ToUnix] map paths through the prefix's dosdevices
// links without starting a process, the most specific drive first;
// [Wine.WinepathToWindows] asks winepath, for checking.
//
// # Platforms
//
// Process groups and the no-wait drain need Unix; on Linux the group is
// killed before the leader is reaped (waitid WNOWAIT), so the group id cannot
// be reused meanwhile. On Windows only the program itself is killed, and
// output is read until every holder closes it.
package winex
