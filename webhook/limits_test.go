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

	"github.com/polyswarm/psengine"
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
// and body buffers beyond a short wait: the others are answered at once
// (503 with Retry-After, or 400 when unsigned) and their connections
// closed; the slow readers are cut off by the read timeout (408); a signed
// bounty meanwhile is answered 503 with Retry-After, not left hanging,
// and taken once the flood is over.
func TestSlowPostsAreBounded(t *testing.T) {
	const limit, flood = 4, 200
	const readTimeout = 3 * time.Second
	var mu sync.Mutex
	var taken []string
	sub := webhook.SubmitFunc(func(_ context.Context, j psengine.Job) error {
		mu.Lock()
		taken = append(taken, j.ID)
		mu.Unlock()
		return nil
	})
	h, err := webhook.NewHandler(sub, webhook.WithSecret(secret), webhook.WithReadLimit(limit, 20*time.Millisecond),
		webhook.WithReadTimeout(readTimeout))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ReadHeaderTimeout = 2 * time.Second
	srv.Start()
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	base := runtime.NumGoroutine()
	start := time.Now()
	conns := make([]net.Conn, flood)
	for i := range conns {
		conns[i] = slowPost(t, addr, i%2 == 1)
		defer conns[i].Close()
	}
	// Well before the read timeout, only the readers are left.
	var extra int
	for {
		extra = runtime.NumGoroutine() - base
		if extra <= limit+2 || time.Since(start) > readTimeout/2 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if extra > limit+2 {
		t.Errorf("%d goroutines more than before %d slow POSTs, %v later; want at most the read limit %d (+2)",
			extra, flood, time.Since(start).Round(time.Millisecond), limit)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 5<<20 {
		t.Errorf("%d slow POSTs allocated %d MiB; want less than 5 (the read limit bounds body buffers)", flood, alloc>>20)
	}

	// A real bounty now: refused for now, at once, with Retry-After.
	body := bountyJSON(t, "7", []byte("content"))
	post := func() (*http.Response, time.Duration) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(string(body)))
		req.Header.Set(webhook.HeaderEvent, "bounty")
		req.Header.Set(webhook.HeaderDelivery, fmt.Sprint("d-", time.Now().UnixNano()))
		req.Header.Set(webhook.HeaderSignature, webhook.Sign(secret, body))
		client := &http.Client{Timeout: 2 * readTimeout}
		defer client.CloseIdleConnections()
		t0 := time.Now()
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res, time.Since(t0)
	}
	if res, took := post(); res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || took > time.Second {
		t.Errorf("signed bounty during the flood: %d (Retry-After %q) after %v; want 503 with Retry-After at once",
			res.StatusCode, res.Header.Get("Retry-After"), took)
	}

	codes := map[int]int{}
	for _, c := range conns {
		res, err := readStatus(c, 2*readTimeout)
		if err != nil {
			t.Errorf("no answer to a slow POST: %v", err)
			continue
		}
		codes[res.StatusCode]++
		if res.StatusCode == http.StatusServiceUnavailable && res.Header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		if !res.Close {
			t.Errorf("answer %d keeps the connection of an unread body open", res.StatusCode)
		}
	}
	want := map[int]int{http.StatusBadRequest: flood / 2, http.StatusServiceUnavailable: flood/2 - limit, http.StatusRequestTimeout: limit}
	if fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Errorf("answers to the slow POSTs %v, want %v (unsigned 400, refused 503, timed out 408)", codes, want)
	}

	if res, _ := post(); res.StatusCode != http.StatusAccepted {
		t.Errorf("signed bounty after the flood: %d, want 202", res.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(taken) != 1 {
		t.Errorf("%d bounties queued, want 1", len(taken))
	}
}
