package webhook_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine/psenginetest"
	"github.com/polyswarm/psengine/webhook"
)

// dialFrom opens a TCP connection to addr from the loopback address ip
// (any of 127.0.0.0/8 on Linux), as a distinct host would.
func dialFrom(t testing.TB, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot connect from %s (needs the whole 127.0.0.0/8 on loopback, as Linux has): %v", ip, err)
	}
	return c
}

// slowClient is a connection that sent a POST with a signature header (any
// 64 hex digits: the handler cannot tell before the body) and trickles its
// body, a byte every 50 ms, never finishing it.
type slowClient struct {
	conn   net.Conn
	answer chan *http.Response // the handler's answer, when it comes; nil: the connection ended without one
	done   chan struct{}
	wg     sync.WaitGroup
}

func startSlowClient(t testing.TB, ip, addr string) *slowClient {
	t.Helper()
	c := &slowClient{conn: dialFrom(t, ip, addr), answer: make(chan *http.Response, 1), done: make(chan struct{})}
	req := "POST / HTTP/1.1\r\nHost: intake\r\n" + webhook.HeaderEvent + ": bounty\r\n" +
		webhook.HeaderSignature + ": " + strings.Repeat("ab", 32) + "\r\nContent-Length: 4096\r\n\r\n{"
	if _, err := io.WriteString(c.conn, req); err != nil {
		t.Fatal(err)
	}
	c.wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-c.done:
				return
			case <-t.C:
				if _, err := c.conn.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	})
	c.wg.Go(func() {
		res, err := http.ReadResponse(bufio.NewReader(c.conn), nil)
		if err != nil {
			c.answer <- nil
			return
		}
		res.Body.Close()
		c.answer <- res
	})
	return c
}

func (c *slowClient) close() {
	close(c.done)
	c.conn.Close()
	c.wg.Wait()
}

// signedClient posts signed bounties from the loopback address ip, over
// one kept-alive connection.
type signedClient struct {
	t      testing.TB
	url    string
	client *http.Client
	n      int
}

func newSignedClient(t testing.TB, ip, url string) *signedClient {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &signedClient{t: t, url: url, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// post sends one signed bounty and returns the answer's status and how
// long it took.
func (c *signedClient) post() (int, http.Header, time.Duration) {
	c.t.Helper()
	c.n++
	id := strconv.Itoa(c.n)
	body := bountyJSON(c.t, id, []byte("content"))
	req, _ := http.NewRequest(http.MethodPost, c.url, bytes.NewReader(body))
	req.Header.Set(webhook.HeaderEvent, "bounty")
	req.Header.Set(webhook.HeaderDelivery, "d-"+id)
	req.Header.Set(webhook.HeaderSignature, webhook.Sign(secret, body))
	t0 := time.Now()
	res, err := c.client.Do(req)
	took := time.Since(t0)
	if err != nil {
		c.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, res.Header, took
}

// Acceptance (issue #19): 64 slow clients that send a signature header and
// trickle a body hold connections, from one address or from eight; signed
// bounties from another address are still answered 202, without waiting:
// the handler is given no read wait at all, so a bounty that found no free
// slot would be answered 503 at once. (How fast, in milliseconds, is
// BenchmarkSignedAmidSlowClients's figure.) The handler has its default
// limits otherwise, but for a read timeout and a rate grace of a minute, so
// that the slow clients cannot be cut off while the bounties are posted
// (the rate is tested on its own below).
func TestSlowClientsDoNotStarveSignedBounties(t *testing.T) {
	for _, tt := range []struct{ slow, sources int }{
		{64, 1}, {64, 8},
		{300, 1}, // more than the read limit: the per-source bound, not the global one, keeps signed bounties flowing
	} {
		slow, sources := tt.slow, tt.sources
		t.Run(fmt.Sprintf("%d slow clients from %d addresses", slow, sources), func(t *testing.T) {
			var mu sync.Mutex
			taken := map[string]bool{}
			sub := webhook.SubmitFunc(func(_ context.Context, j broker.Job) error {
				mu.Lock()
				defer mu.Unlock()
				taken[j.ID] = true
				return nil
			})
			h, err := webhook.NewHandler(sub, webhook.WithSecret(secret), webhook.WithReadTimeout(time.Minute),
				webhook.WithMinBodyRate(webhook.DefaultMinBodyRate, time.Minute), webhook.WithReadLimit(webhook.DefaultMaxReads, 0))
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			addr := srv.Listener.Addr().String()

			ip := func(i int) string { return fmt.Sprintf("127.0.0.%d", 1+i%sources) }
			clients := make([]*slowClient, slow)
			for i := range clients {
				clients[i] = startSlowClient(t, ip(i), addr)
				defer clients[i].close()
			}
			// Each source reads DefaultReadsPerSource bodies; the rest of
			// its slow clients are refused (503, connection closed).
			holding := min(slow/sources, webhook.DefaultReadsPerSource)
			refused := slow - holding*sources
			for range refused {
				res := waitAnswer(t, clients)
				if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || !res.Close {
					t.Fatalf("a slow client over its source's limit: %d (Retry-After %q, close %v), want 503 with Retry-After, closed",
						res.StatusCode, res.Header.Get("Retry-After"), res.Close)
				}
			}
			holdingNow := func() bool {
				all, _ := webhook.Reading(h, "")
				for s := range sources {
					if _, n := webhook.Reading(h, ip(s)+":1"); n != holding {
						return false
					}
				}
				return all == holding*sources
			}
			psenginetest.Eventually(t, "the slow clients holding every read slot of their sources", holdingNow)

			signer := newSignedClient(t, "127.0.0.200", srv.URL)
			var worst time.Duration
			for range 20 {
				code, _, took := signer.post()
				if code != http.StatusAccepted {
					t.Fatalf("signed bounty while %d slow clients hold their slots: %d, want 202", slow, code)
				}
				worst = max(worst, took)
			}
			// The slow clients held their slots throughout.
			if !holdingNow() {
				all, _ := webhook.Reading(h, "")
				t.Errorf("after the signed bounties, %d bodies being read; want the %d slow clients still holding them", all, holding*sources)
			}
			t.Logf("%d slow clients from %d address(es): %d holding, %d refused; slowest of 20 signed bounties: %v",
				slow, sources, holding*sources, refused, worst)
			mu.Lock()
			defer mu.Unlock()
			if len(taken) != 20 {
				t.Errorf("%d bounties queued, want 20", len(taken))
			}
		})
	}
}

// waitAnswer returns the next answer any of clients gets.
func waitAnswer(t testing.TB, clients []*slowClient) *http.Response {
	t.Helper()
	deadline := time.After(psenginetest.EventuallyWithin)
	for {
		for _, c := range clients {
			select {
			case res := <-c.answer:
				if res == nil {
					t.Fatal("a slow client's connection ended without an answer")
				}
				return res
			default:
			}
		}
		select {
		case <-deadline:
			t.Fatalf("no answer to a slow client within %v", psenginetest.EventuallyWithin)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// A body slower than the minimum rate is cut off once the grace has passed
// (408, connection closed), long before the read timeout; one that keeps
// above the rate, however long it takes, is read.
func TestMinBodyRate(t *testing.T) {
	const rate, grace = 200, 100 * time.Millisecond
	var logs psenginetest.SyncBuffer
	h, err := webhook.NewHandler(webhook.SubmitFunc(func(context.Context, broker.Job) error { return nil }),
		webhook.WithSecret(secret), webhook.WithReadTimeout(time.Minute), webhook.WithMinBodyRate(rate, grace),
		webhook.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	// A byte every 50 ms: 20 bytes/s.
	c := startSlowClient(t, "127.0.0.1", addr)
	defer c.close()
	res := waitAnswer(t, []*slowClient{c})
	if res.StatusCode != http.StatusRequestTimeout || !res.Close {
		t.Errorf("body at 20 bytes/s with a minimum of %d: %d (close %v), want 408 and the connection closed", rate, res.StatusCode, res.Close)
	}
	if want := "body slower than 200 bytes/s"; !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, logs.String())
	}

	// A signed bounty in chunks of 20 bytes every 20 ms: 1000 bytes/s, 5
	// times the minimum, and longer than the grace in all.
	body := bountyJSON(t, "paced", []byte("content"))
	if took := time.Duration(len(body)/20) * 20 * time.Millisecond; took < 2*grace {
		t.Fatalf("a %d-byte body takes %v: want it well past the grace %v", len(body), took, grace)
	}
	conn := dialFrom(t, "127.0.0.1", addr)
	defer conn.Close()
	head := "POST / HTTP/1.1\r\nHost: intake\r\n" + webhook.HeaderEvent + ": bounty\r\n" + webhook.HeaderDelivery + ": d-paced\r\n" +
		webhook.HeaderSignature + ": " + webhook.Sign(secret, body) + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	for rest := body; len(rest) > 0; {
		n := min(20, len(rest))
		if _, err := conn.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
		time.Sleep(20 * time.Millisecond) // the client's pace
	}
	paced, err := readStatus(conn, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if paced.StatusCode != http.StatusAccepted {
		t.Errorf("signed bounty sent at 5 times the minimum rate: %d, want 202", paced.StatusCode)
	}
}

// The read slots are shared fairly, not magically: requests from a host
// whose slots slow bodies hold are refused (503 with Retry-After) until
// those are cut off, and enough hosts can take every slot of the handler,
// whose limit (the memory bound) then holds for everyone.
func TestReadLimitsBetweenSources(t *testing.T) {
	const all, perSource = 8, 2
	h, err := webhook.NewHandler(webhook.SubmitFunc(func(context.Context, broker.Job) error { return nil }),
		webhook.WithSecret(secret), webhook.WithReadLimit(all, 20*time.Millisecond), webhook.WithReadLimitPerSource(perSource),
		webhook.WithReadTimeout(time.Minute), webhook.WithMinBodyRate(webhook.DefaultMinBodyRate, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	var clients []*slowClient
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	hold := func(ip string) {
		for range perSource {
			clients = append(clients, startSlowClient(t, ip, addr))
		}
		psenginetest.Eventually(t, ip+" holding its read slots", func() bool {
			_, n := webhook.Reading(h, ip+":1")
			return n == perSource
		})
	}

	hold("127.0.0.1")
	if code, hdr, _ := newSignedClient(t, "127.0.0.1", srv.URL).post(); code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Errorf("signed bounty from the host holding its slots: %d (Retry-After %q), want 503 with Retry-After", code, hdr.Get("Retry-After"))
	}
	if code, _, _ := newSignedClient(t, "127.0.0.2", srv.URL).post(); code != http.StatusAccepted {
		t.Errorf("signed bounty from another host: %d, want 202", code)
	}
	for i := 2; i <= all/perSource; i++ {
		hold(fmt.Sprintf("127.0.0.%d", i))
	}
	if n, _ := webhook.Reading(h, ""); n != all {
		t.Fatalf("%d bodies being read, want the limit %d", n, all)
	}
	if code, hdr, _ := newSignedClient(t, "127.0.0.100", srv.URL).post(); code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Errorf("signed bounty once %d hosts hold every slot: %d (Retry-After %q), want 503 with Retry-After",
			all/perSource, code, hdr.Get("Retry-After"))
	}
}

// BenchmarkSignedAmidSlowClients: signed bounties posted one after another
// from 127.0.0.2 to the handler (default limits) on a loopback server,
// while 64 slow clients from 127.0.0.1 hold connections with a signature
// header and a trickled body ("slow-64": they are given a minute of grace
// so that they hold throughout), or while nobody else is connected
// ("quiet"). Reports the time to 202 of the signed bounties: p50-ms,
// p99-ms and max-ms (issue #19's target: every one within 100 ms).
func BenchmarkSignedAmidSlowClients(b *testing.B) {
	for _, slow := range []int{0, 64} {
		name := "quiet"
		if slow > 0 {
			name = fmt.Sprintf("slow-%d", slow)
		}
		b.Run(name, func(b *testing.B) {
			h, err := webhook.NewHandler(webhook.SubmitFunc(func(context.Context, broker.Job) error { return nil }),
				webhook.WithSecret(secret), webhook.WithReadTimeout(time.Hour), webhook.WithMinBodyRate(webhook.DefaultMinBodyRate, time.Hour))
			if err != nil {
				b.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			clients := make([]*slowClient, slow)
			for i := range clients {
				clients[i] = startSlowClient(b, "127.0.0.1", srv.Listener.Addr().String())
				defer clients[i].close()
			}
			holding := min(slow, webhook.DefaultReadsPerSource)
			for range slow - holding {
				if res := waitAnswer(b, clients); res.StatusCode != http.StatusServiceUnavailable {
					b.Fatalf("a slow client over its source's limit: %d, want 503", res.StatusCode)
				}
			}
			psenginetest.Eventually(b, "the slow clients holding their source's slots", func() bool {
				n, _ := webhook.Reading(h, "")
				return n == holding
			})
			signer := newSignedClient(b, "127.0.0.2", srv.URL)
			signer.post() // the connection, kept alive from here on
			var took []time.Duration
			stopCPU := psenginetest.MeasureCPU(b)
			for b.Loop() {
				code, _, d := signer.post()
				if code != http.StatusAccepted {
					b.Fatalf("signed bounty: %d, want 202", code)
				}
				took = append(took, d)
			}
			stopCPU()
			if n, _ := webhook.Reading(h, ""); n != holding {
				b.Fatalf("%d bodies being read after the run, want the %d slow clients still holding", n, holding)
			}
			slices.Sort(took)
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(ms(took[len(took)/2]), "p50-ms")
			b.ReportMetric(ms(took[len(took)*99/100]), "p99-ms")
			b.ReportMetric(ms(took[len(took)-1]), "max-ms")
		})
	}
}
