//go:build linux

package winex

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// findServer looks for the wineserver process serving prefix in /proc: a
// process of this user whose name starts with "wineserver" and whose
// working directory is the prefix's server directory. Wine names that
// directory server-DEV-INODE after the prefix's device and inode numbers
// (in hex), under /tmp/.wine-UID or, in Debian's build, a directory the
// prefix's "wineserver" file names: the base name is enough.
func findServer(prefix string) (ServerInfo, bool) {
	st, err := os.Stat(prefix)
	if err != nil {
		return ServerInfo{}, false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return ServerInfo{}, false
	}
	want := fmt.Sprintf("server-%x-%x", uint64(sys.Dev), uint64(sys.Ino))
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return ServerInfo{}, false
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		comm, err := os.ReadFile(filepath.Join(dir, "comm"))
		if err != nil || !strings.HasPrefix(string(comm), "wineserver") {
			continue
		}
		cwd, err := os.Readlink(filepath.Join(dir, "cwd")) // fails for other users' processes
		if err != nil || filepath.Base(cwd) != want {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(cmdline, "\x00")), "\x00")
		if len(args) > 0 {
			args = args[1:]
		}
		return ServerInfo{PID: pid, Args: args, Persistent: persistentForever(args)}, true
	}
	return ServerInfo{}, false
}
