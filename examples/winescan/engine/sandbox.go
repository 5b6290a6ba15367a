package engine

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/polyswarm/psengine"
)

var _ psengine.SandboxDeclarer = Scanner{}

// SandboxNeeds declares what a sandboxed worker child needs to run Wine:
// the prefix (Wine writes its registry and files there), the wineserver's
// socket directory (/tmp/.wine-UID, or the one the prefix's "wineserver"
// file names in Debian's build), and Wine's installation.
func (s Scanner) SandboxNeeds(env psengine.Env) psengine.SandboxNeeds {
	sess, err := s.sessionFor(env)
	if err != nil {
		return psengine.SandboxNeeds{}
	}
	w := sess.Wine
	needs := psengine.SandboxNeeds{
		Write: []string{w.Prefix, filepath.Join("/tmp", ".wine-"+strconv.Itoa(os.Getuid()))},
		Read:  []string{w.Loader, w.Server, w.PathCmd},
	}
	if name, err := os.ReadFile(filepath.Join(w.Prefix, "wineserver")); err == nil {
		if dir := strings.TrimSpace(string(name)); dir != "" && !strings.Contains(dir, "..") {
			needs.Write = append(needs.Write, filepath.Join("/tmp", dir))
		}
	}
	return needs
}
