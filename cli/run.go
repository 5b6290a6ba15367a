package cli

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/polyswarm/psengine"
)

// runFlags are the flags of analyze, webhook and worker that say where
// scans run and how long they may take.
type runFlags struct {
	backend   backendList
	maxTasks  int
	maxMemory byteSize
	timeout   time.Duration
	sandbox   sandboxFlag
	sbUser    string
}

// addRunFlags registers the run flags on fs; queueDefault is --backend's
// default ("local", or "" for worker, which must name a queue).
func (p *Program) addRunFlags(fs *flag.FlagSet, queueDefault string) *runFlags {
	r := &runFlags{backend: backendList{queue: queueDefault}}
	fs.Var(&r.backend, "backend", "where scans run: local (in this process), process (in child processes, recycled), "+
		"or a registered queue ("+p.backendNames()+"), possibly with process (NAME,process)")
	fs.IntVar(&r.maxTasks, "max-tasks-per-child", 0, "with process: retire a child after N scans (0: never)")
	fs.Var(&r.maxMemory, "max-child-memory", "with process: retire a child over SIZE of resident memory, killing it during a scan that drives it over (e.g. 512M; 0: no limit)")
	fs.Var(&r.sandbox, "sandbox", "with process: on (default) confines each child (allow-listed environment, no capabilities, Landlock, seccomp, limits); off runs them unconfined")
	fs.StringVar(&r.sbUser, "sandbox-user", "", "with process, when running as root: run the children as this user (name or uid)")
	fs.DurationVar(&r.timeout, "timeout", 0, "scan deadline of artifacts this command forges, and of bounties without a usable expiration (default 5m)")
	return r
}

// check reports a usage error in the run flags.
func (r *runFlags) check(p *Program) error {
	if q := r.backend.queue; q != "" && q != "local" {
		if _, ok := p.Backends[q]; !ok {
			return usageError{fmt.Sprintf("--backend %q: this program knows local, process and %s", q, p.backendNames())}
		}
	}
	switch {
	case r.maxTasks < 0:
		return usageError{"--max-tasks-per-child must not be negative"}
	case r.timeout < 0:
		return usageError{"--timeout must not be negative"}
	case !r.backend.process && (r.maxTasks > 0 || r.maxMemory > 0):
		return usageError{"--max-tasks-per-child and --max-child-memory apply to --backend process only"}
	case !r.backend.process && (r.sandbox.set || r.sbUser != ""):
		return usageError{"--sandbox and --sandbox-user apply to --backend process only"}
	case r.sandbox.off && r.sbUser != "":
		return usageError{"--sandbox-user needs the sandbox on"}
	}
	return nil
}

// engineOptions are the engine options the run flags ask for.
func (r *runFlags) engineOptions() []psengine.Option {
	var opts []psengine.Option
	if r.backend.process {
		opts = append(opts, psengine.WithProcessWorkers(psengine.ProcessConfig{MaxTasksPerChild: r.maxTasks, MaxChildMemory: int64(r.maxMemory),
			Sandbox: psengine.SandboxConfig{Off: r.sandbox.off, User: r.sbUser}}))
	}
	if r.timeout > 0 {
		opts = append(opts, psengine.WithTimeout(r.timeout), psengine.WithDefaultWindow(r.timeout+psengine.DefaultDeliveryMargin))
	}
	return opts
}

// pipelineFlags are the flags of the commands that serve a queue (webhook,
// worker) that bound the engine's stages.
type pipelineFlags struct {
	inFlight       int
	deliveryWindow time.Duration
}

func addPipelineFlags(fs *flag.FlagSet) *pipelineFlags {
	f := &pipelineFlags{}
	fs.IntVar(&f.inFlight, "in-flight", psengine.DefaultInFlight, "bounties in progress at once (fetching, waiting for a worker, scanning, delivering); --workers bounds the scans among them")
	fs.DurationVar(&f.deliveryWindow, "delivery-window", psengine.DefaultDeliveryWindow, "how long an answer is retried after its bounty was accepted, when its expiration is later")
	return f
}

func (f *pipelineFlags) check() error {
	switch {
	case f.inFlight < 1:
		return usageError{"--in-flight must be at least 1"}
	case f.deliveryWindow <= 0:
		return usageError{"--delivery-window must be positive"}
	}
	return nil
}

func (f *pipelineFlags) engineOptions() []psengine.Option {
	return []psengine.Option{psengine.WithInFlight(f.inFlight), psengine.WithDeliveryWindow(f.deliveryWindow)}
}

// sandboxFlag is --sandbox: on or off.
type sandboxFlag struct{ off, set bool }

func (f *sandboxFlag) String() string {
	if f != nil && f.off {
		return "off"
	}
	return "on"
}

func (f *sandboxFlag) Set(v string) error {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "on", "true", "1":
		f.off = false
	case "off", "false", "0":
		f.off = true
	default:
		return fmt.Errorf("%q: want on or off", v)
	}
	f.set = true
	return nil
}

// backendList is --backend: a queue (local or a registered name) and
// whether scans run in child processes ("process"), comma-separated or
// repeated: --backend process, --backend nats,process.
type backendList struct {
	queue   string
	process bool
	set     bool
}

func (b *backendList) String() string {
	if b == nil {
		return ""
	}
	s := b.queue
	if b.process {
		if s == "" || s == "local" {
			return "process"
		}
		s += ",process"
	}
	return s
}

func (b *backendList) Set(v string) error {
	if !b.set { // the first --backend replaces the default
		b.queue, b.set = "", true
	}
	for _, name := range strings.Split(v, ",") {
		switch name = strings.TrimSpace(name); name {
		case "":
		case "process":
			b.process = true
		default:
			if b.queue != "" && b.queue != name {
				return fmt.Errorf("two queues: %s and %s", b.queue, name)
			}
			b.queue = name
		}
	}
	if b.queue == "" {
		b.queue = "local"
	}
	return nil
}

// byteSize is a size flag: bytes, or with a K, M, G or T suffix (powers of
// 1024; an optional B or iB after it).
type byteSize int64

func (s *byteSize) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *byteSize) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = byteSize(n)
	return nil
}

func parseSize(v string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(v))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	shift := 0
	if t != "" {
		if i := strings.IndexByte("KMGT", t[len(t)-1]); i >= 0 {
			shift = 10 * (i + 1)
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || n < 0 || n*float64(int64(1)<<shift) > 1<<62 {
		return 0, fmt.Errorf("%q is not a size (bytes, or with K, M, G or T)", v)
	}
	return int64(n * float64(int64(1)<<shift)), nil
}
