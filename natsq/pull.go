package natsq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/polyswarm/psengine/pipeline"
)

// The consumers of a Broker in one process (an engine runs WithInFlight of
// them, 256 by default) share one feeder: one inbox for the broker's whole
// life, and JetStream pull requests (CONSUMER.MSG.NEXT) sent by hand, one
// at a time, each asking for as many jobs as consumers are waiting. So a
// busy process asks for nothing, an idle one keeps one request waiting at
// the server, and jobs arrive in batches without a round trip per job.
// (The client's Fetch subscribes and unsubscribes on every call; its
// Consume keeps a buffer of its own sized without regard to who waits.)
//
// One request at a time, because a delivered job does not say which
// request brought it (it carries the stream's subject); the server ends a
// request with a status on its own subject only when it expires unfilled.
// A request filled, the next asks for the consumers waiting by then.

// statusHeader carries the status of an inline status message (no body):
// 404 no message waiting (no_wait), 408 request expired, 409 request ended
// by the server (consumer deleted, limits, leadership change), 100 idle
// heartbeat.
const statusHeader = "Status"

// errConnectionClosed: the connection closed for good; Consume returns it.
var errConnectionClosed = fmt.Errorf("natsq: consume: the connection is closed: %w", nats.ErrConnectionClosed)

// feeder pulls jobs for the consumers of a Broker in this process and
// hands them out in order of arrival, oldest waiting consumer first.
type feeder struct {
	b       *Broker
	sub     *nats.Subscription
	prefix  string // requests are answered on prefix.N
	subject string // where pull requests go

	mu         sync.Mutex
	waiting    []chan *delivery // consumers waiting, oldest first (each buffered 1)
	ready      []*delivery      // arrived with no consumer waiting: the next take gets them
	req        *pullReq         // the request waiting at the server, if any
	n          uint64
	failures   int  // pulls that failed in a row
	backingOff bool // a pull failed: the next waits for a timer
	consumers  int  // Consume calls using the feeder
	closed     bool // Close: no more requests; what arrives is handed back
	gone       error
	quiet      chan struct{} // closed once nothing more can arrive (closed and drained, or gone)
	unsubbed   bool          // close drains the inbox: its end is not the connection's
}

// pullReq is a pull request waiting at the server.
type pullReq struct {
	reply      string
	batch, got int
	guard      *time.Timer // ends it should the server's end be lost
}

func (b *Broker) newFeeder() (*feeder, error) {
	f := &feeder{
		b:       b,
		prefix:  b.nc.NewInbox(),
		subject: fmt.Sprintf("%sCONSUMER.MSG.NEXT.%s.%s", b.apiPrefix, b.names.jobs, b.names.consumer),
		quiet:   make(chan struct{}),
	}
	sub, err := b.nc.Subscribe(f.prefix+".*", f.onMsg)
	if err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil, errConnectionClosed
		}
		return nil, fmt.Errorf("natsq: subscribe for jobs: %w", err)
	}
	// Unlimited: the server sends no more than was asked for.
	_ = sub.SetPendingLimits(-1, -1)
	sub.SetClosedHandler(func(string) { f.ended() })
	f.sub = sub
	return f, nil
}

// join counts a consumer in; leave counts it out, and hands back the jobs
// that arrived for no one once no consumer is left.
func (f *feeder) join() {
	f.mu.Lock()
	f.consumers++
	f.mu.Unlock()
}

func (f *feeder) leave() {
	f.mu.Lock()
	f.consumers--
	var back []*delivery
	if f.consumers == 0 {
		back, f.ready = f.ready, nil
	}
	f.mu.Unlock()
	for _, d := range back {
		f.b.handBackUnhandled(d)
	}
}

// take waits for a job. It returns nil and ctx's error once ctx is done
// (taking none), nil and nil once the broker is closed, and nil and
// errConnectionClosed once the connection is closed for good.
func (f *feeder) take(ctx context.Context) (*delivery, error) {
	f.mu.Lock()
	switch {
	case f.gone != nil:
		f.mu.Unlock()
		return nil, f.gone
	case f.closed:
		f.mu.Unlock()
		return nil, nil
	case len(f.ready) > 0:
		d := f.ready[0]
		f.ready[0] = nil
		f.ready = f.ready[1:]
		f.mu.Unlock()
		return d, nil
	}
	ch := make(chan *delivery, 1)
	f.waiting = append(f.waiting, ch)
	f.pullLocked()
	f.mu.Unlock()
	select {
	case d := <-ch:
		if d == nil { // closed, or gone
			f.mu.Lock()
			defer f.mu.Unlock()
			return nil, f.gone
		}
		return d, nil
	case <-ctx.Done():
		f.mu.Lock()
		if i := slices.Index(f.waiting, ch); i >= 0 {
			f.waiting = slices.Delete(f.waiting, i, i+1)
			f.mu.Unlock()
			return nil, ctx.Err()
		}
		f.mu.Unlock()
		// A job was handed to this consumer as its context ended: not
		// taken; the next consumer gets it.
		if d := <-ch; d != nil {
			f.give(d)
		}
		return nil, ctx.Err()
	}
}

// give hands d to the oldest consumer waiting, or keeps it for the next
// one; with none left, or once closed, it is handed back.
func (f *feeder) give(d *delivery) {
	f.mu.Lock()
	switch {
	case f.gone != nil:
		f.mu.Unlock()
		f.b.release(d) // the connection is gone: it lapses at the server
		return
	case f.closed, f.consumers == 0:
		f.mu.Unlock()
		go f.b.handBackUnhandled(d) // not in the inbox's goroutine: it writes
		return
	case len(f.waiting) > 0:
		w := f.waiting[0]
		f.waiting[0] = nil
		f.waiting = f.waiting[1:]
		f.mu.Unlock()
		w <- d
		return
	}
	f.ready = append(f.ready, d)
	f.mu.Unlock()
}

// pullLocked asks for as many jobs as consumers wait, unless a request
// waits at the server already. Callers hold f.mu.
func (f *feeder) pullLocked() {
	need := len(f.waiting) - len(f.ready)
	if need <= 0 || f.req != nil || f.closed || f.gone != nil || f.backingOff {
		return
	}
	f.n++
	reply := f.prefix + "." + strconv.FormatUint(f.n, 10)
	req := fmt.Appendf(nil, `{"batch":%d,"expires":%d}`, need, pullWait.Nanoseconds())
	if err := f.b.nc.PublishRequest(f.subject, reply, req); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			f.goneLocked()
			return
		}
		f.failures++
		delay := f.retryLocked()
		f.b.log.Warn("asking for jobs failed; asking again", "err", err, "failures", f.failures, "delay", delay)
		return
	}
	r := &pullReq{reply: reply, batch: need}
	// The server ends the request at pullWait with a status; should that
	// be lost, the request is over by this guard.
	r.guard = time.AfterFunc(pullWait+time.Second, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.req == r {
			f.b.log.Debug("a pull request's end never came; asking again", "asked", r.batch, "got", r.got)
			f.endLocked()
			f.pullLocked()
		}
	})
	f.req = r
}

// retryLocked asks for jobs again after a delay growing with f.failures,
// unless such a retry waits already, and returns the delay. Callers hold
// f.mu.
func (f *feeder) retryLocked() time.Duration {
	if f.backingOff {
		return 0
	}
	f.backingOff = true
	delay := pipeline.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second}.Delay(f.failures)
	time.AfterFunc(delay, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.backingOff = false
		f.pullLocked()
	})
	return delay
}

// endLocked forgets the request: filled, or ended by the server. Callers
// hold f.mu.
func (f *feeder) endLocked() {
	if f.req != nil {
		f.req.guard.Stop()
		f.req = nil
	}
}

// quietLocked records that nothing more can arrive. Callers hold f.mu.
func (f *feeder) quietLocked() {
	select {
	case <-f.quiet:
	default:
		close(f.quiet)
	}
}

// onMsg receives the answers to the pull requests: jobs and statuses.
func (f *feeder) onMsg(m *nats.Msg) {
	f.mu.Lock()
	ours := f.req != nil && m.Subject == f.req.reply
	if status := m.Header.Get(statusHeader); status != "" && len(m.Data) == 0 {
		switch {
		case !ours, status == "100": // an earlier request's end, or an idle heartbeat
		case status == "404", status == "408":
			f.endLocked()
			f.failures = 0
			f.pullLocked()
		default: // 409 and others: the server ended it early; ask again after a pause
			f.endLocked()
			f.failures++
			f.b.log.Debug("a pull request ended early", "status", status, "description", m.Header.Get("Description"))
			f.retryLocked()
		}
		f.mu.Unlock()
		return
	}
	d, err := newDelivery(m)
	if err != nil {
		f.mu.Unlock()
		return // not a JetStream delivery: nothing to settle
	}
	if f.req != nil {
		f.req.got++
		if f.req.got >= f.req.batch {
			f.endLocked() // filled: the next request follows once d is given
		}
	}
	f.mu.Unlock()
	f.b.hold(d)
	f.give(d)
	f.mu.Lock()
	f.pullLocked()
	f.mu.Unlock()
}

// close stops asking for jobs: the consumers waiting return, the jobs
// that arrived for no one are handed back, and the inbox is drained: the
// server delivers no more to the request still waiting there (it checks
// for interest first), and what it sent before is received and handed
// back. quiet is closed once the drain is over.
func (f *feeder) close() {
	f.mu.Lock()
	f.closed = true
	for _, w := range f.waiting {
		w <- nil
	}
	f.waiting = nil
	back := f.ready
	f.ready = nil
	f.endLocked()
	drain := !f.unsubbed && f.gone == nil
	f.unsubbed = true
	f.mu.Unlock()
	for _, d := range back {
		go f.b.handBackUnhandled(d) // Drain waits for them
	}
	if !drain {
		return
	}
	// Disconnected, nothing more comes (the server forgets the request of
	// a client gone); closed, neither.
	if !f.b.nc.IsConnected() || f.sub.Drain() != nil {
		_ = f.sub.Unsubscribe()
		f.mu.Lock()
		f.quietLocked()
		f.mu.Unlock()
	}
}

// ended is the subscription's end: its drain after close, or the
// connection's, for good.
func (f *feeder) ended() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unsubbed {
		f.quietLocked()
		return
	}
	f.goneLocked()
}

// goneLocked ends the feeder with the connection. Callers hold f.mu.
func (f *feeder) goneLocked() {
	if f.gone != nil {
		return
	}
	f.gone = errConnectionClosed
	for _, w := range f.waiting {
		w <- nil
	}
	f.waiting = nil
	f.endLocked()
	for _, d := range f.ready {
		go f.b.release(d)
	}
	f.ready = nil
	f.quietLocked()
}

// delivery is one delivered job message.
type delivery struct {
	m         *nats.Msg
	delivered int       // how many times the server delivered it, this one included
	seq       uint64    // its sequence in the job stream
	at        time.Time // when it arrived
	stopBeat  func()
}

// newDelivery reads the delivery facts from the acknowledgement subject:
// $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>,
// or the newer form with a domain and an account hash after $JS.ACK and a
// random token at the end.
func newDelivery(m *nats.Msg) (*delivery, error) {
	t := strings.Split(m.Reply, ".")
	if len(t) < 9 || t[0] != "$JS" || t[1] != "ACK" {
		return nil, fmt.Errorf("natsq: %q is not a JetStream acknowledgement subject", m.Reply)
	}
	if len(t) >= 12 {
		t = t[2:] // domain and account hash
	}
	delivered, err1 := strconv.Atoi(t[4])
	seq, err2 := strconv.ParseUint(t[5], 10, 64)
	if err := errors.Join(err1, err2); err != nil || delivered < 1 {
		return nil, fmt.Errorf("natsq: acknowledgement subject %q: %w", m.Reply, err)
	}
	return &delivery{m: m, delivered: delivered, seq: seq, at: time.Now()}, nil
}

func (d *delivery) Data() []byte         { return d.m.Data }
func (d *delivery) Headers() nats.Header { return d.m.Header }

func (d *delivery) settle(verb string) error { return d.m.Respond([]byte(verb)) }

// Ack removes the job from the queue.
func (d *delivery) Ack() error { return d.settle("+ACK") }

// Nak hands the job back for another delivery now.
func (d *delivery) Nak() error { return d.settle("-NAK") }

// NakWithDelay hands the job back for another delivery after delay.
func (d *delivery) NakWithDelay(delay time.Duration) error {
	return d.settle(fmt.Sprintf(`-NAK {"delay": %d}`, delay.Nanoseconds()))
}

// InProgress resets the job's AckWait.
func (d *delivery) InProgress() error { return d.settle("+WPI") }

// Term removes the job without another delivery.
func (d *delivery) Term() error { return d.settle("+TERM") }
