// Package envdirs resolves an engine's base directories and well-known
// executables from the environment.
//
// # Variables
//
// Every directory comes from one environment variable, with a default under a
// common root:
//
//	PSENGINE_HOME         root of the layout (relative: against the working directory)
//	PSENGINE_BIN_DIR      executables                    default HOME/bin
//	PSENGINE_LIB_DIR      libraries                      default HOME/lib
//	PSENGINE_SECRETS_DIR  secrets and licences           default HOME/secrets
//	PSENGINE_CONFIG_DIR   configuration                  default HOME/etc
//	PSENGINE_CACHE_DIR    cache                          default HOME/cache
//	PSENGINE_DATA_DIR     data (signatures, models)      default HOME/share
//	PSENGINE_STATE_DIR    logs, rate limits, telemetry   default HOME/state
//	PSENGINE_RUNTIME_DIR  sockets, pipes, pid files      default HOME/run
//	PSENGINE_SCANNER      the scanning executable        relative: against the bin directory
//	PSENGINE_UPDATER      the definition updater         relative: against the bin directory
//	TMPDIR                scratch directory              default /tmp (as os.TempDir)
//	TMPPREFIX             scratch file-name prefix       default ENGINE-
//
// A relative PSENGINE_*_DIR resolves against the home directory. An empty
// variable counts as unset.
//
// # Without PSENGINE_HOME: XDG base directories
//
// When PSENGINE_HOME is unset the defaults follow the XDG Base Directory
// specification, one subdirectory per engine:
//
//	home, data  $XDG_DATA_HOME/ENGINE     (~/.local/share/ENGINE)
//	bin, lib    HOME/bin, HOME/lib        (~/.local/share/ENGINE/bin, .../lib)
//	config      $XDG_CONFIG_HOME/ENGINE   (~/.config/ENGINE)
//	secrets     CONFIG/secrets            (~/.config/ENGINE/secrets)
//	cache       $XDG_CACHE_HOME/ENGINE    (~/.cache/ENGINE)
//	state       $XDG_STATE_HOME/ENGINE    (~/.local/state/ENGINE)
//	runtime     $XDG_RUNTIME_DIR/ENGINE
//
// As the specification requires, a relative XDG_* value is ignored (with a
// warning). When XDG_RUNTIME_DIR is unset too, the runtime directory falls back
// to TEMP/ENGINE-runtime-UID with a warning: Check then makes sure nobody else
// created it first. With PSENGINE_HOME set, HOME/run needs no warning: the
// operator chose the layout.
//
// # Lifecycle
//
// [Resolve] only computes paths: it neither reads nor writes the file system.
// [Dirs.Ensure] creates what is missing (runtime and secrets 0700, the rest
// 0755) and [Dirs.Check] refuses an unsafe runtime or secrets directory with a
// [*CheckError] that names the path and the fix ("chmod 700 PATH"), as ssh
// refuses a private key others can read; [ReadSecretFile] reads one secret
// from a file under the same rules. A [Dirs] holds only strings: copy it
// freely, for instance into the Env that scanners receive.
package envdirs
