//go:build linux

package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// PidsGroup is a child's own pids cgroup: it bounds the tasks (processes
// and threads) of the child and everything it starts, for every user,
// root included (the kernel never applies RLIMIT_NPROC to uid 0), and
// keeps track of descendants that left the child's process group.
type PidsGroup struct {
	Dir string
}

var groupSeq atomic.Uint64

// NewPidsGroup makes a pids cgroup for one child under the engine's own
// (cgroup v1's pids hierarchy, or v2 where the engine's cgroup lets it),
// allowing max tasks. The error says why there is none: no pids
// controller, no permission.
func NewPidsGroup(max uint64) (*PidsGroup, error) {
	base, err := pidsBase()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(base, fmt.Sprintf("psengine-%d-%d", os.Getpid(), groupSeq.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pids cgroup: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pids.max"), []byte(strconv.FormatUint(max, 10)), 0o644); err != nil {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("pids cgroup: %w", err)
	}
	return &PidsGroup{Dir: dir}, nil
}

// Add moves the process pid into the group: what it starts from then on
// is in it too.
func (g *PidsGroup) Add(pid int) error {
	if err := os.WriteFile(filepath.Join(g.Dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("pids cgroup: %w", err)
	}
	return nil
}

// Remove kills what is left in the group (descendants that left the
// child's process group) and removes it. It waits at most a second for
// them to go.
func (g *PidsGroup) Remove() error {
	deadline := time.Now().Add(time.Second)
	for {
		err := os.Remove(g.Dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("pids cgroup: %w", err)
		}
		data, _ := os.ReadFile(filepath.Join(g.Dir, "cgroup.procs"))
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(5 * time.Millisecond) // the killed tasks leave the group as they are reaped
	}
}

// pidsBase is the directory of this process's cgroup in a hierarchy with
// the pids controller, where a child group can be made.
func pidsBase() (string, error) {
	cgroups, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("pids cgroup: %w", err)
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return "", err
	}
	var v2path string
	for line := range strings.SplitSeq(strings.TrimSpace(string(cgroups)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2path = parts[2]
			continue
		}
		if slices.Contains(strings.Split(parts[1], ","), "pids") {
			if mp, ok := mounts["pids"]; ok {
				return filepath.Join(mp, parts[2]), nil
			}
		}
	}
	mp, ok := mounts["cgroup2"]
	if !ok || v2path == "" {
		return "", errors.New("pids cgroup: no pids controller mounted")
	}
	base := filepath.Join(mp, v2path)
	ctl, err := os.ReadFile(filepath.Join(base, "cgroup.subtree_control"))
	if err != nil {
		return "", fmt.Errorf("pids cgroup: %w", err)
	}
	if !slices.Contains(strings.Fields(string(ctl)), "pids") {
		// Allowed only where the cgroup holds no process (or is the root).
		if err := os.WriteFile(filepath.Join(base, "cgroup.subtree_control"), []byte("+pids"), 0o644); err != nil {
			return "", fmt.Errorf("pids cgroup: cgroup v2 %s does not delegate the pids controller: %w", base, err)
		}
	}
	return base, nil
}

// cgroupMounts maps "pids" to the mount point of cgroup v1's pids
// hierarchy and "cgroup2" to v2's, from /proc/self/mountinfo.
func cgroupMounts() (map[string]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("pids cgroup: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, after := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(after) < 3 {
			continue
		}
		switch after[0] {
		case "cgroup2":
			out["cgroup2"] = fields[4]
		case "cgroup":
			if slices.Contains(strings.Split(after[2], ","), "pids") {
				out["pids"] = fields[4]
			}
		}
	}
	return out, sc.Err()
}
