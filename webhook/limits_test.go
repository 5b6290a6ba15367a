package webhook_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine/psenginetest"
	"github.com/polyswarm/psengine/webhook"
)

// slowPost opens a connection and sends a POST whose body never comes:
// the headers, a 100 kB Content-Length and one byte. signed says whether it
// carries a (wrong) signature, which makes the handler read the body.
func slowPost(t *testing.T, addr string, signed bool) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	req := "POST / HTTP/1.1\r\nHost: intake\r\n" + webhook.HeaderEvent + ": bounty\r\nContent-Length: 100000\r\n"
	if signed {
		req += webhook.HeaderSignature + ": " + strings.Repeat("0", 64) + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n{"); err != nil {
		t.Fatal(err)
	}
	return c
}

// readStatus reads the answer on c, waiting up to d.
func readStatus(c net.Conn, d time.Duration) (*http.Response, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		res.Body.Close()
	}
	return res, err
}

// A flood of slow POSTs takes no more than the read limit of goroutines
// and body buffers: the others are answered at once (503 with
// Retry-After, or 400 when unsigned) and their connections closed; a
// signed bounty meanwhile is answered 503 with Retry-After, not left
// hanging, and taken once the readers are gone. Every wait is on a
// condition: the readers hold their slots until the test lets them go.
func TestSlowPostsAreBounded(t *testing.T) {
	const limit, flood = 4, 200
	var mu sync.Mutex
	var taken []string
	sub := webhook.SubmitFunc(func(_ context.Context, j broker.Job) error {
		mu.Lock()
		taken = append(taken, j.ID)
		mu.Unlock()
		return nil
	})
	h, err := webhook.NewHandler(sub, webhook.WithSecret(secret), webhook.WithReadLimit(limit, 20*time.Millisecond),
		webhook.WithReadTimeout(time.Hour), webhook.WithMinBodyRate(0, 0), webhook.WithReadLimitPerSource(limit))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	base := runtime.NumGoroutine()
	type answer struct {
		res *http.Response
		err error
	}
	conns := make([]net.Conn, flood)
	answers := make([]chan answer, flood)
	for i := range conns {
		conns[i] = slowPost(t, addr, i%2 == 1)
		defer conns[i].Close()
		answers[i] = make(chan answer, 1)
		go func() {
			res, err := readStatus(conns[i], time.Hour)
			answers[i] <- answer{res, err}
		}()
	}
	// Every POST but the readers' is answered; then only the readers are
	// left (theirs, and the test's goroutines waiting for their answers).
	got := make([]*answer, flood)
	answered := func() int {
		n := 0
		for i, ch := range answers {
			if got[i] == nil {
				select {
				case a := <-ch:
					got[i] = &a
				default:
				}
			}
			if got[i] != nil {
				n++
			}
		}
		return n
	}
	psenginetest.Eventually(t, "every POST but the readers' answered", func() bool { return answered() == flood-limit })
	psenginetest.Eventually(t, "only the readers left", func() bool { return runtime.NumGoroutine()-base <= 2*limit+2 })
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 5<<20 {
		t.Errorf("%d slow POSTs allocated %d MiB; want less than 5 (the read limit bounds body buffers)", flood, alloc>>20)
	}

	// A real bounty now: refused for now, with Retry-After.
	body := bountyJSON(t, "7", []byte("content"))
	post := func() *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(string(body)))
		req.Header.Set(webhook.HeaderEvent, "bounty")
		req.Header.Set(webhook.HeaderDelivery, fmt.Sprint("d-", time.Now().UnixNano()))
		req.Header.Set(webhook.HeaderSignature, webhook.Sign(secret, body))
		client := &http.Client{}
		defer client.CloseIdleConnections()
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if res := post(); res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Errorf("signed bounty during the flood: %d (Retry-After %q); want 503 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}

	codes := map[int]int{}
	for i, a := range got {
		if a == nil {
			continue // a reader's
		}
		if a.err != nil {
			t.Errorf("no answer to slow POST %d: %v", i, a.err)
			continue
		}
		codes[a.res.StatusCode]++
		if a.res.StatusCode == http.StatusServiceUnavailable && a.res.Header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		if !a.res.Close {
			t.Errorf("answer %d keeps the connection of an unread body open", a.res.StatusCode)
		}
	}
	want := map[int]int{http.StatusBadRequest: flood / 2, http.StatusServiceUnavailable: flood/2 - limit}
	if fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Errorf("answers to the slow POSTs %v, want %v (unsigned 400, refused 503)", codes, want)
	}

	// The readers go: their slots are free, and a signed bounty is taken.
	for i, a := range got {
		if a == nil {
			conns[i].Close()
		}
	}
	psenginetest.Eventually(t, "a signed bounty taken once the readers are gone", func() bool { return post().StatusCode == http.StatusAccepted })
	mu.Lock()
	defer mu.Unlock()
	if len(taken) != 1 {
		t.Errorf("%d bounties queued, want 1", len(taken))
	}
}

// A body that does not come within the read timeout is cut off: 408, and
// the connection closed.
func TestReadTimeoutCutsSlowBodies(t *testing.T) {
	h, err := webhook.NewHandler(&queue{}, webhook.WithSecret(secret), webhook.WithReadTimeout(100*time.Millisecond),
		webhook.WithMinBodyRate(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := slowPost(t, srv.Listener.Addr().String(), true)
	defer c.Close()
	res, err := readStatus(c, time.Minute)
	if err != nil || res.StatusCode != http.StatusRequestTimeout || !res.Close {
		t.Fatalf("a body that never comes: %+v, %v; want 408 and the connection closed", res, err)
	}
}
