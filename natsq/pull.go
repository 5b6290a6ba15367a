package natsq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// A consumer pulls its jobs one at a time over an inbox it keeps for its
// whole life, with JetStream's pull requests (CONSUMER.MSG.NEXT) sent by
// hand: the client's Fetch subscribes and unsubscribes on every call, which
// costs the server as much as the job itself when jobs are small.

// statusHeader carries the status of an inline status message (no body):
// 404 no message waiting (no_wait), 408 request expired, 409 request
// ended by the server (consumer deleted, limits, leadership change), 100
// idle heartbeat.
const statusHeader = "Status"

// puller is one Consume call's channel for jobs.
type puller struct {
	nc      *nats.Conn
	sub     *nats.Subscription
	prefix  string // requests are answered on prefix.N
	subject string // where pull requests go
	n       atomic.Uint64
}

func (b *Broker) newPuller() (*puller, error) {
	prefix := b.nc.NewInbox()
	sub, err := b.nc.SubscribeSync(prefix + ".*")
	if err != nil {
		return nil, fmt.Errorf("natsq: subscribe for jobs: %w", err)
	}
	return &puller{
		nc:      b.nc,
		sub:     sub,
		prefix:  prefix,
		subject: fmt.Sprintf("%sCONSUMER.MSG.NEXT.%s.%s", b.apiPrefix, b.names.jobs, b.names.consumer),
	}, nil
}

func (p *puller) close() { _ = p.sub.Unsubscribe() }

// errPullEnded is a pull request the server ended without a job (409):
// the caller waits and asks again.
var errPullEnded = errors.New("natsq: pull request ended by the server")

// pull asks for one job and waits for it: up to wait for a job to arrive,
// or, with noWait, only for one already waiting. It returns nil, nil when
// none came. Only one request of a puller is outstanding at a time: each
// ends with a job or a status before the next is sent (a request whose
// answer never came is over by the time its client-side guard passes).
func (p *puller) pull(ctx context.Context, wait time.Duration, noWait bool) (*delivery, error) {
	reply := p.prefix + "." + strconv.FormatUint(p.n.Add(1), 10)
	var req []byte
	if noWait {
		req = []byte(`{"batch":1,"no_wait":true}`)
		wait = 0
	} else {
		req = fmt.Appendf(nil, `{"batch":1,"expires":%d}`, wait.Nanoseconds())
	}
	if err := p.nc.PublishRequest(p.subject, reply, req); err != nil {
		return nil, fmt.Errorf("natsq: pull: %w", err)
	}
	gctx, cancel := context.WithTimeout(ctx, wait+time.Second)
	defer cancel()
	for {
		m, err := p.sub.NextMsgWithContext(gctx)
		if err != nil {
			if ctx.Err() == nil && gctx.Err() != nil {
				return nil, nil // the server's answer was lost; the request is over
			}
			return nil, err
		}
		if status := m.Header.Get(statusHeader); status != "" && len(m.Data) == 0 {
			switch {
			case m.Subject != reply, status == "100":
				continue // an earlier request's end, or an idle heartbeat
			case status == "404", status == "408":
				return nil, nil
			default:
				return nil, fmt.Errorf("%w: %s %s", errPullEnded, status, m.Header.Get("Description"))
			}
		}
		d, err := newDelivery(m)
		if err != nil {
			continue // not a JetStream delivery: nothing to settle
		}
		return d, nil
	}
}

// delivery is one delivered job message.
type delivery struct {
	m         *nats.Msg
	delivered int    // how many times the server delivered it, this one included
	seq       uint64 // its sequence in the job stream
	pending   uint64 // jobs waiting behind it when it was delivered
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
	pending, err3 := strconv.ParseUint(t[8], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("natsq: acknowledgement subject %q: %w", m.Reply, err)
	}
	return &delivery{m: m, delivered: delivered, seq: seq, pending: pending}, nil
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
