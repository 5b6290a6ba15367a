package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine/fetch"
	"github.com/polyswarm/psengine/psenginetest"
	"github.com/polyswarm/psengine/webhook"
)

const secret = "correct horse battery staple"

// bountyJSON is the wire form of a test bounty for data (see
// psenginetest.Bounty) with id and options; its response URL is an
// answer endpoint that exists nowhere unless an option sets one.
func bountyJSON(t testing.TB, id string, data []byte, opts ...psenginetest.BountyOption) []byte {
	t.Helper()
	b := psenginetest.Bounty(data, append([]psenginetest.BountyOption{psenginetest.WithID(id),
		psenginetest.WithResponseURL("https://api.polyswarm.test/answer/" + id)}, opts...)...)
	body, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// post builds a webhook POST; headers are name, value pairs.
func post(body []byte, headers ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	return r
}

// signed builds a POST as PolySwarm sends it.
func signed(event, delivery string, body []byte) *http.Request {
	h := []string{webhook.HeaderEvent, event, webhook.HeaderSignature, webhook.Sign(secret, body)}
	if delivery != "" {
		h = append(h, webhook.HeaderDelivery, delivery)
	}
	return post(body, h...)
}

// answer is what the handler replied.
type answer struct {
	Code       int
	Status     string
	Error      bool // an error message was given
	RetryAfter string
	Allow      string
}

func serve(t testing.TB, h http.Handler, r *http.Request) answer {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	res := w.Result()
	got := answer{Code: res.StatusCode, RetryAfter: res.Header.Get("Retry-After"), Allow: res.Header.Get("Allow")}
	if r.Method == http.MethodHead {
		return got
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var doc struct {
		Status string  `json:"status"`
		Error  *string `json:"error"`
	}
	if err := json.NewDecoder(res.Body).Decode(&doc); err != nil {
		t.Fatalf("answer body is not JSON: %v", err)
	}
	got.Status, got.Error = doc.Status, doc.Error != nil && *doc.Error != ""
	return got
}

// queue is a Submitter that records jobs, or fails with err.
type queue struct {
	mu   sync.Mutex
	jobs []broker.Job
	err  error
}

func (q *queue) SubmitJob(_ context.Context, job broker.Job) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return q.err
	}
	q.jobs = append(q.jobs, job)
	return nil
}

func (q *queue) fail(err error) {
	q.mu.Lock()
	q.err = err
	q.mu.Unlock()
}

func (q *queue) taken() []broker.Job {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]broker.Job(nil), q.jobs...)
}

func newHandler(t testing.TB, sub webhook.Submitter, opts ...webhook.Option) *webhook.Handler {
	t.Helper()
	h, err := webhook.NewHandler(sub, append([]webhook.Option{webhook.WithSecret(secret)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// pipeNet is an in-memory network (net.Pipe) for tests in a synctest
// bubble, where loopback sockets would stop the fake clock: an
// http.Server serves its listener, an http.Transport dials it.
type pipeNet struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPipeNet() *pipeNet {
	return &pipeNet{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (n *pipeNet) Accept() (net.Conn, error) {
	select {
	case c := <-n.conns:
		return c, nil
	case <-n.closed:
		return nil, net.ErrClosed
	}
}

func (n *pipeNet) Close() error {
	n.once.Do(func() { close(n.closed) })
	return nil
}

func (n *pipeNet) Addr() net.Addr { return pipeAddr{} }

func (n *pipeNet) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	server, client := net.Pipe()
	select {
	case n.conns <- server:
		return client, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-n.closed:
		return nil, errors.New("pipeNet: connection refused")
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// readAll reads a request body for the tests' servers.
func readAll(t testing.TB, r io.Reader) string {
	b, err := io.ReadAll(r)
	if err != nil {
		t.Error(err)
	}
	return string(b)
}

// hasComment reports whether comments holds c.
func hasComment(comments []string, c string) bool {
	for _, x := range comments {
		if strings.EqualFold(x, c) {
			return true
		}
	}
	return false
}

// allowFiles is the remote policy plus local files, as a host allows them.
func allowFiles() fetch.Policy {
	p := fetch.Remote()
	p.Allow = append(p.Allow, "file")
	return p
}
