//go:build unix

package engine

import (
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// fileOwner is the name of the user owning the file at p (its uid when
// the name is unknown), or "".
func fileOwner(p string) string {
	st, err := os.Stat(p)
	if err != nil {
		return ""
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	if name, ok := owners.Load(sys.Uid); ok {
		return name.(string)
	}
	id := strconv.FormatUint(uint64(sys.Uid), 10)
	name := id
	if u, err := user.LookupId(id); err == nil {
		name = u.Username
	}
	owners.Store(sys.Uid, name)
	return name
}
