//go:build unix

package clamdtest

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyswarm/psengine/examples/clamav/clamd"
	"github.com/polyswarm/psengine/psenginetest"
)

// TestfilesDir is where Debian's clamav-testfiles puts its 44 samples,
// all wrapping the same 544-byte clam.exe.
const TestfilesDir = "/usr/share/clamav-testfiles"

// Signature names of StandardSignatures, before clamd appends
// ".UNOFFICIAL" (see Daemon.Reference for the names clamd reports).
const (
	EicarSig   = "PsTest.Eicar"
	ClamExeSig = "PsTest.ClamExe"
)

// Need returns the paths of programs, skipping the test when one is
// missing, or failing it when CI=true (where they are installed).
func Need(tb testing.TB, programs ...string) []string {
	tb.Helper()
	var paths []string
	for _, p := range programs {
		path, err := exec.LookPath(p)
		if err != nil {
			Missing(tb, fmt.Sprintf("%s not installed (apt-get install clamav clamav-daemon clamdscan clamav-testfiles): %v", p, err))
		}
		paths = append(paths, path)
	}
	return paths
}

// Missing skips the test, or fails it when CI=true.
func Missing(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatal(why)
	}
	tb.Skip(why)
}

// Testfiles returns the paths of clamav-testfiles' samples, sorted
// (skipping or failing as Need when the package is missing).
func Testfiles(tb testing.TB) []string {
	tb.Helper()
	files, _ := filepath.Glob(filepath.Join(TestfilesDir, "*"))
	if len(files) == 0 {
		Missing(tb, "no files in "+TestfilesDir+" (apt-get install clamav-testfiles)")
	}
	slices.Sort(files)
	return files
}

// DaemonConfig is the database and settings of a test's clamd.
type DaemonConfig struct {
	// Bodies are body signatures (.ndb): name -> bytes matched anywhere.
	Bodies map[string][]byte
	// Hashes are hash signatures (.hdb): name -> a content whose MD5 and
	// size are signed.
	Hashes map[string][]byte
	// StreamMaxLength is clamd's StreamMaxLength, such as "4M"; "" keeps
	// clamd's default (100M).
	StreamMaxLength string
	// TCP makes clamd listen on a loopback TCP port too (Daemon.TCP).
	TCP bool
	// MaxThreads is clamd's MaxThreads (scanning threads); 0 keeps its
	// default (10).
	MaxThreads int
	// CVDVersion, when not 0, packs the signatures into an unsigned
	// daily.cud container of that version (with sigtool), so that VERSION
	// answers "ClamAV X/CVDVersion/DATE".
	CVDVersion int
}

// StandardSignatures is the tests' database: the EICAR string as a body
// signature (EicarSig) and clam.exe, the sample inside every testfile, as a
// hash signature (ClamExeSig).
func StandardSignatures(tb testing.TB) DaemonConfig {
	tb.Helper()
	clamExe, err := os.ReadFile(filepath.Join(TestfilesDir, "clam.exe"))
	if err != nil {
		Missing(tb, fmt.Sprintf("clamav-testfiles: %v", err))
	}
	return DaemonConfig{
		Bodies: map[string][]byte{EicarSig: psenginetest.EICAR()},
		Hashes: map[string][]byte{ClamExeSig: clamExe},
	}
}

// Daemon is a real clamd started by a test on its own database, in a
// short temp dir, listening on a unix socket.
type Daemon struct {
	Dir     string        // the temp dir holding everything
	Conf    string        // clamd.conf, for clamdscan -c
	DBDir   string        // the signature database
	Address clamd.Address // the unix socket
	TCP     clamd.Address // the TCP address, when DaemonConfig.TCP

	clamd  string
	cmd    *exec.Cmd
	done   chan struct{}
	stderr *psenginetest.SyncBuffer
}

// StartDaemon writes cfg's database and clamd.conf, starts clamd in the
// foreground and waits until it answers PING. clamd is stopped and reaped
// when the test ends. Without clamd the test is skipped (failed under CI).
func StartDaemon(tb testing.TB, cfg DaemonConfig) *Daemon {
	tb.Helper()
	bin := Need(tb, "clamd")[0]
	dir := ShortTempDir(tb)
	d := &Daemon{
		Dir:     dir,
		Conf:    filepath.Join(dir, "clamd.conf"),
		DBDir:   filepath.Join(dir, "db"),
		Address: clamd.Address{Network: "unix", Addr: filepath.Join(dir, "clamd.sock")},
		clamd:   bin,
	}
	if err := os.Mkdir(d.DBDir, 0o755); err != nil {
		tb.Fatal(err)
	}
	d.installDatabase(tb, cfg)
	conf := []string{
		"DatabaseDirectory " + d.DBDir,
		"LocalSocket " + d.Address.Addr,
		"LocalSocketMode 600",
		"FixStaleSocket yes",
		"Foreground yes",
		"TemporaryDirectory " + dir,
	}
	if cfg.StreamMaxLength != "" {
		conf = append(conf, "StreamMaxLength "+cfg.StreamMaxLength)
	}
	if cfg.MaxThreads > 0 {
		conf = append(conf, "MaxThreads "+strconv.Itoa(cfg.MaxThreads))
	}
	if cfg.TCP {
		port, err := freePort()
		if err != nil {
			tb.Fatal(err)
		}
		conf = append(conf, "TCPSocket "+strconv.Itoa(port), "TCPAddr 127.0.0.1")
		d.TCP = clamd.Address{Network: "tcp", Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	}
	if err := os.WriteFile(d.Conf, []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.stop)
	d.Start(tb)
	return d
}

// Start starts clamd (again, after Kill) on the same socket and database
// and waits until it answers PING.
func (d *Daemon) Start(tb testing.TB) {
	tb.Helper()
	if d.running() {
		tb.Fatal("clamd already running")
	}
	d.stderr = &psenginetest.SyncBuffer{}
	d.cmd = exec.Command(d.clamd, "-c", d.Conf)
	d.cmd.Stdout, d.cmd.Stderr = d.stderr, d.stderr
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		tb.Fatalf("starting clamd: %v", err)
	}
	d.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(d.cmd, d.done)

	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if lastErr = d.ping(); lastErr == nil {
			return
		}
		select {
		case <-d.done:
			tb.Fatalf("clamd exited at start: %s\n%s", d.cmd.ProcessState, d.stderr)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("clamd did not answer PING within a minute: %v\n%s", lastErr, d.stderr)
		}
	}
}

func (d *Daemon) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := clamd.Dial(ctx, d.Address)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Ping(ctx)
}

func (d *Daemon) running() bool {
	if d.done == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// Kill kills clamd at once (SIGKILL) and reaps it, as a crash would.
func (d *Daemon) Kill(tb testing.TB) {
	tb.Helper()
	if !d.running() {
		return
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	<-d.done
}

// stop ends clamd at the end of the test: SIGTERM, then SIGKILL after a while.
func (d *Daemon) stop() {
	if !d.running() {
		return
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
}

// CPU returns the CPU time (user and system) clamd used since it last
// started, from /proc: ok is false where there is none, or when clamd is
// not running.
func (d *Daemon) CPU() (cpu time.Duration, ok bool) {
	if !d.running() {
		return 0, false
	}
	return procCPU(d.cmd.Process.Pid)
}

// Log returns what clamd printed so far.
func (d *Daemon) Log() string { return d.stderr.String() }

// Reference scans files with clamscan on the daemon's database, as an
// independent reference: path -> detection name as ClamAV reports it
// (absent when clean).
func (d *Daemon) Reference(tb testing.TB, files ...string) map[string]string {
	tb.Helper()
	clamscan := Need(tb, "clamscan")[0]
	args := append([]string{"--no-summary", "-d", d.DBDir, "--"}, files...)
	out, err := exec.Command(clamscan, args...).Output()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		tb.Fatalf("clamscan: %v\n%s", err, out)
	}
	found := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		rest, ok := strings.CutSuffix(line, " FOUND")
		if !ok {
			continue
		}
		i := strings.LastIndex(rest, ": ")
		found[rest[:i]] = rest[i+2:]
	}
	return found
}

// packCVD builds daily.cud of the given version from the daily.* files in
// build and moves it into dbDir.
func packCVD(tb testing.TB, build string, version int, dbDir string) {
	tb.Helper()
	sigtool := Need(tb, "sigtool")[0]
	if err := os.WriteFile(filepath.Join(build, "COPYING"), []byte("psengine test signatures\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(sigtool, "--build=daily.cud", "--unsigned", "--cvd-version="+strconv.Itoa(version), "--no-cdiff", "--datadir="+build)
	cmd.Dir = build
	cmd.Stdin = strings.NewReader("psengine-tests\n") // the builder name it asks for
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("sigtool --build: %v\n%s", err, out)
	}
	if err := os.Rename(filepath.Join(build, "daily.cud"), filepath.Join(dbDir, "daily.cud")); err != nil {
		tb.Fatalf("sigtool built no daily.cud: %v", err)
	}
}

// writeDatabase writes base.ndb and base.hdb into dir.
func writeDatabase(tb testing.TB, dir, base string, cfg DaemonConfig) {
	tb.Helper()
	var ndb, hdb []string
	for name, body := range cfg.Bodies {
		ndb = append(ndb, fmt.Sprintf("%s:0:*:%s", name, hex.EncodeToString(body)))
	}
	for name, content := range cfg.Hashes {
		sum := md5.Sum(content)
		hdb = append(hdb, fmt.Sprintf("%s:%d:%s", hex.EncodeToString(sum[:]), len(content), name))
	}
	slices.Sort(ndb)
	slices.Sort(hdb)
	if len(ndb)+len(hdb) == 0 {
		tb.Fatal("clamdtest: a database needs at least one signature")
	}
	for name, lines := range map[string][]string{base + ".ndb": ndb, base + ".hdb": hdb} {
		if len(lines) == 0 {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
