//go:build unix

package envdirs

import (
	"io/fs"
	"syscall"
)

// permsMeaningful says whether Unix owners and modes are enforced.
const permsMeaningful = true

func owner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
