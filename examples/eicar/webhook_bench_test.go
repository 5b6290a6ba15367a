//go:build linux

package main_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/polyswarm/psengine/webhook"
)

const benchSecret = "bench secret"

// BenchmarkWebhookAsShipped: the `eicar webhook` process with its default
// flags (a durable intake store, 4 workers, the result cache) but
// --allow-private (every address is loopback here), 64 signed senders on
// loopback, each bounty's own 1 KiB artifact fetched from a loopback server and its answer POSTed to
// another. Each iteration sends 3,000 bounties to a fresh engine and waits
// for every answer, then sends as many through the floor: the same
// senders making the three minimal exchanges a bounty needs (a POST
// answered 202, a GET of the artifact, a POST of the answer) on trivial
// loopback handlers. A sender whose POST gets 503 retries 10 ms later, as
// PolySwarm would; its time to 202 counts every attempt. Reported:
// answers/s and floor/s; "x-floor", the engine's rate as a fraction of the
// floor's (target >= 0.3); "p99-to-202-ms" (target < 25 on an idle
// machine) and the 503s; "cpu-us/bounty", the engine process's CPU time
// per bounty. With strace installed, one more pass of 500 bounties under
// strace counts the engine's fsync and fdatasync calls ("fsyncs/bounty").
func BenchmarkWebhookAsShipped(b *testing.B) {
	const senders, n = 64, 3000
	dir := b.TempDir()
	bin := filepath.Join(dir, "eicar")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	// Each bounty's artifact is its own (the random base, stamped with the
	// bounty's number), as PolySwarm's are: the result cache, on as
	// shipped, misses every time, and every bounty is scanned.
	base := make([]byte, 1024)
	_, _ = rand.Read(base)
	content := func(seq string) []byte { return append([]byte(seq+"\n"), base[len(seq)+1:]...) }
	artifacts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(content(strings.TrimPrefix(r.URL.Path, "/a/")))
	}))
	defer artifacts.Close()
	var answered atomic.Int64
	var target atomic.Int64
	all := make(chan struct{}, 1)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if answered.Add(1) == target.Load() {
			all <- struct{}{}
		}
	}))
	defer receiver.Close()
	accept := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer accept.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	defer client.CloseIdleConnections()

	send := func(count int, fn func(i int)) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range senders {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < count; i = int(next.Add(1)) - 1 {
					fn(i)
				}
			})
		}
		wg.Wait()
	}
	post := func(url string, body []byte, header http.Header) int {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		for k, v := range header {
			req.Header[k] = v
		}
		res, err := client.Do(req)
		if err != nil {
			b.Error(err)
			return 0
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		return res.StatusCode
	}
	seq := 0
	bounties := func(count int) [][]byte {
		exp := time.Now().Add(30 * time.Minute).UTC().Format(time.RFC3339)
		out := make([][]byte, count)
		for i := range out {
			seq++
			sum := sha256.Sum256(content(strconv.Itoa(seq)))
			sha := hex.EncodeToString(sum[:])
			out[i] = fmt.Appendf(nil, `{"id":%d,"artifact_type":"FILE","artifact_uri":"%s/a/%d","sha256":%q,`+
				`"expiration":%q,"response_url":"%s/answer/%d","rules":{"min_allowed_bid":62500000000000000,`+
				`"max_allowed_bid":1000000000000000000},"phase":"assertion","duration":300,"metadata":{"filename":"sample.exe"}}`,
				seq, artifacts.URL, seq, sha, exp, receiver.URL, seq)
		}
		return out
	}
	// runEngine sends bodies to a fresh engine started by wrap(bin, args)
	// and returns how long until every answer came, the times to 202, the
	// 503s, and the engine's CPU time.
	runEngine := func(bodies [][]byte, wrap []string) (time.Duration, []time.Duration, int64, time.Duration) {
		home := b.TempDir()
		args := append(append(slices.Clone(wrap), bin), "webhook", "--allow-private", "-p", "0")
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "PSENGINE_HOME="+home, "TMPDIR="+home, "PSENGINE_WEBHOOK_SECRET="+benchSecret, "LOG_LEVEL=warn")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // SIGTERM reaches the engine under strace too
		stdout, _ := cmd.StdoutPipe()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		line, err := bufio.NewReader(stdout).ReadString('\n')
		base, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
		if err != nil || !ok {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			b.Fatalf("the webhook did not start: %q %v\n%s", line, err, stderr.String())
		}
		target.Store(int64(len(bodies)))
		answered.Store(0)
		toAccept := make([]time.Duration, len(bodies))
		var refused atomic.Int64
		start := time.Now()
		send(len(bodies), func(i int) {
			h := http.Header{}
			h.Set(webhook.HeaderEvent, "bounty")
			h.Set(webhook.HeaderSignature, webhook.Sign(benchSecret, bodies[i]))
			h.Set(webhook.HeaderDelivery, strconv.Itoa(i))
			t0 := time.Now()
			for post(base, bodies[i], h) == http.StatusServiceUnavailable {
				refused.Add(1)
				time.Sleep(10 * time.Millisecond)
			}
			toAccept[i] = time.Since(t0)
		})
		select {
		case <-all:
		case <-time.After(time.Minute):
			b.Fatalf("%d of %d answered\n%s", answered.Load(), len(bodies), stderr.String())
		}
		elapsed := time.Since(start)
		cpu := processCPU(cmd.Process.Pid)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			b.Fatalf("the webhook's exit: %v\n%s", err, stderr.String())
		}
		return elapsed, toAccept, refused.Load(), cpu
	}
	floor := func(bodies [][]byte) time.Duration {
		target.Store(int64(len(bodies)))
		answered.Store(0)
		answer := []byte(`{"verdict":"unknown","bid":0,"metadata":{"malware_family":""}}`)
		start := time.Now()
		send(len(bodies), func(i int) {
			post(accept.URL, bodies[i], nil)
			res, err := client.Get(artifacts.URL + "/a")
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			post(receiver.URL+"/answer", answer, nil)
		})
		<-all
		return time.Since(start)
	}

	var engineWall, floorWall, cpu time.Duration
	var toAccept []time.Duration
	var refused int64
	for b.Loop() {
		w, lat, r, c := runEngine(bounties(n), nil)
		engineWall, cpu, refused = engineWall+w, cpu+c, refused+r
		toAccept = append(toAccept, lat...)
		floorWall += floor(bounties(n))
	}
	slices.Sort(toAccept)
	total := float64(n * b.N)
	b.ReportMetric(total/engineWall.Seconds(), "answers/s")
	b.ReportMetric(total/floorWall.Seconds(), "floor/s")
	b.ReportMetric(floorWall.Seconds()/engineWall.Seconds(), "x-floor")
	b.ReportMetric(float64(toAccept[len(toAccept)*99/100].Microseconds())/1000, "p99-to-202-ms")
	b.ReportMetric(float64(refused), "503s")
	b.ReportMetric(float64(cpu.Microseconds())/total, "cpu-us/bounty")

	if strace, err := exec.LookPath("strace"); err == nil {
		const m = 500
		out := filepath.Join(dir, "strace.out")
		runEngine(bounties(m), []string{strace, "-f", "-qq", "-c", "-e", "trace=fsync,fdatasync", "-o", out})
		data, err := os.ReadFile(out)
		if err != nil {
			b.Fatal(err)
		}
		var syncs int
		for _, m := range straceCalls.FindAllSubmatch(data, -1) {
			k, _ := strconv.Atoi(string(m[1]))
			syncs += k
		}
		b.ReportMetric(float64(syncs)/m, "fsyncs/bounty")
	}
}

// straceCalls finds the calls column of strace -c's fsync and fdatasync
// rows: "% time seconds usecs/call calls [errors] syscall".
var straceCalls = regexp.MustCompile(`(?m)^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?f(?:data)?sync\s*$`)

// processCPU is the user and system time of the process pid so far.
func processCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces), from the last ')'.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // clock ticks (USER_HZ 100)
}
