package webhook

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/internal/logsafe"
)

// Submitter takes the bounties the handler accepts. *psengine.Engine is one:
// SubmitJob returns once the job is queued, with an error wrapping
// psengine.ErrQueueFull (answered 503, retry later), psengine.ErrClosed
// (503: shut down) or psengine.ErrMalformedBounty (400).
type Submitter interface {
	SubmitJob(ctx context.Context, job broker.Job) error
}

// SubmitFunc adapts a function to Submitter.
type SubmitFunc func(ctx context.Context, job broker.Job) error

// SubmitJob calls f.
func (f SubmitFunc) SubmitJob(ctx context.Context, job broker.Job) error { return f(ctx, job) }

var _ Submitter = (*psengine.Engine)(nil)

// Handler is PolySwarm's webhook intake (see the package documentation for
// every answer). Make one with NewHandler; it is safe for concurrent use.
// ServeHTTP blocks only for reading the body and queueing the bounty.
type Handler struct {
	sub        Submitter
	macs       *macPool // keyed with the secret; nil: insecure mode
	maxBody    int64
	retryAfter string
	log        *slog.Logger

	reads       chan struct{} // a slot per body being read
	sources     *sourceLimits // nil: no per-source bound
	readWait    time.Duration
	readTimeout time.Duration
	minRate     int64 // bytes per second; 0: none
	rateGrace   time.Duration
}

// NewHandler returns a handler that verifies requests and hands their
// bounties to sub. It fails with ErrNoSecret when no secret is given and
// insecure mode is not chosen, and with ErrInvalidOption for an option out
// of range. In insecure mode it logs a warning.
func NewHandler(sub Submitter, opts ...Option) (*Handler, error) {
	if sub == nil {
		return nil, fmt.Errorf("%w: nil Submitter", ErrInvalidOption)
	}
	cfg := config{
		maxBody:     DefaultMaxBody,
		retryAfter:  DefaultRetryAfter,
		logger:      slog.New(slog.DiscardHandler),
		maxReads:    DefaultMaxReads,
		perSource:   DefaultReadsPerSource,
		readWait:    DefaultReadWait,
		readTimeout: DefaultReadTimeout,
		minRate:     DefaultMinBodyRate,
		rateGrace:   DefaultBodyGrace,
	}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil Option", ErrInvalidOption)
		}
		if err := o.apply(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.secret == nil && !cfg.insecure {
		return nil, ErrNoSecret
	}
	h := &Handler{
		sub:        sub,
		maxBody:    cfg.maxBody,
		retryAfter: strconv.FormatInt(int64(math.Ceil(cfg.retryAfter.Seconds())), 10),
		log:        cfg.logger,

		reads:       make(chan struct{}, cfg.maxReads),
		readWait:    cfg.readWait,
		readTimeout: cfg.readTimeout,
		minRate:     cfg.minRate,
		rateGrace:   cfg.rateGrace,
	}
	if cfg.perSource < cfg.maxReads {
		h.sources = newSourceLimits(cfg.perSource)
	}
	if cfg.secret != nil {
		h.macs = newMACPool(cfg.secret)
	} else {
		h.log.Warn("webhook: INSECURE: no secret, requests are not authenticated; anyone who can reach this server can submit bounties")
	}
	return h, nil
}

// Answers' status words.
const (
	statusOK          = "OK"
	statusAccepted    = "ACCEPTED"
	statusDuplicate   = "DUPLICATE"
	statusRejected    = "REJECTED"
	statusUnavailable = "UNAVAILABLE"
	statusExpired     = "EXPIRED"
)

// ServeHTTP answers one webhook request; see the package documentation.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		// Liveness answers wherever bounties are taken: the registered URL
		// may have a path, which PolySwarm and load balancers probe (as
		// polyswarm_engine answers them). A host's own routes, such as
		// metrics, are its mux's and never reach the Handler.
		reply(w, http.StatusOK, statusOK, "")
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		h.reject(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
		return
	}

	// Whatever the server allows, this request has readTimeout to send its
	// body (where the connection supports deadlines), and readBody
	// shortens that to keep the body above the minimum rate.
	start := time.Now()
	rc := http.NewResponseController(w)
	deadlines := rc.SetReadDeadline(start.Add(h.readTimeout)) == nil

	signature := r.Header.Get(HeaderSignature)
	if h.macs != nil && signature == "" {
		h.dropBody(w, rc)
		h.reject(w, r, http.StatusBadRequest, ErrMissingSignature.Error())
		return
	}
	var src netip.Addr
	var srcSlots *sourceSlots
	if h.sources != nil {
		src = sourceOf(r.RemoteAddr)
		srcSlots = h.sources.enter(src)
	}
	if refused := h.acquireRead(r.Context(), srcSlots); refused != "" {
		if srcSlots != nil {
			h.sources.leave(src, srcSlots)
		}
		h.dropBody(w, rc)
		h.log.WarnContext(r.Context(), "webhook: request refused for now: "+refused, "status", http.StatusServiceUnavailable,
			"remote", r.RemoteAddr)
		w.Header().Set("Retry-After", h.retryAfter)
		reply(w, http.StatusServiceUnavailable, statusUnavailable, refused+", retry later")
		return
	}
	body, err := h.readBody(w, r, rc, start, deadlines)
	<-h.reads
	if srcSlots != nil {
		<-srcSlots.slots
		h.sources.leave(src, srcSlots)
	}
	if err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			h.reject(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", h.maxBody))
		case errors.Is(err, errTooSlow):
			h.dropBody(w, rc)
			h.reject(w, r, http.StatusRequestTimeout, fmt.Sprintf("body slower than %d bytes/s", h.minRate))
		case errors.Is(err, os.ErrDeadlineExceeded):
			h.dropBody(w, rc)
			h.reject(w, r, http.StatusRequestTimeout, fmt.Sprintf("body not received within %v", h.readTimeout))
		default:
			h.reject(w, r, http.StatusBadRequest, "cannot read body: "+err.Error())
		}
		return
	}
	// The body is in: the rest of the request (queueing it) is not bound
	// by the time it had to send it.
	if deadlines {
		_ = rc.SetReadDeadline(time.Time{})
	}
	if h.macs != nil {
		if err := h.macs.verify(body, signature); err != nil {
			h.reject(w, r, http.StatusUnauthorized, err.Error())
			return
		}
	}

	switch event := strings.TrimSpace(r.Header.Get(HeaderEvent)); {
	case strings.EqualFold(event, "ping"):
		reply(w, http.StatusOK, statusOK, "")
		return
	case strings.EqualFold(event, "bounty"):
	case event == "":
		h.reject(w, r, http.StatusBadRequest, "missing "+HeaderEvent+" header")
		return
	default:
		h.reject(w, r, http.StatusBadRequest, fmt.Sprintf("unsupported event %.64q", event))
		return
	}

	delivery := r.Header.Get(HeaderDelivery)
	if len(delivery) > MaxDeliveryIDLen {
		h.reject(w, r, http.StatusBadRequest, fmt.Sprintf("%s longer than %d bytes", HeaderDelivery, MaxDeliveryIDLen))
		return
	}
	b, err := psengine.ParseBounty(body)
	for _, warning := range b.Warnings {
		if err == nil {
			h.log.WarnContext(r.Context(), "webhook: bounty accepted as is", "bounty", b.ID, "delivery", delivery, "warning", warning)
		}
	}
	if err == nil && b.ResponseURL == "" {
		// Whatever else is missing has a default; an answer with nowhere
		// to go does not.
		err = &psengine.BountyError{Field: "response_url", Reason: "missing: the answer would have nowhere to go"}
	}
	if err != nil {
		h.reject(w, r, http.StatusBadRequest, err.Error())
		return
	}
	h.submit(w, r, b, delivery)
}

// Why a request is refused a read slot.
const (
	refusedSource = "too many requests from your address being read"
	refusedAll    = "too many requests being read"
)

// acquireRead takes a slot of src (unless nil), then one of the handler's,
// to read a body, waiting up to h.readWait for both in all. It returns ""
// with both taken, else why not (and none taken): the wait passed or the
// request ended.
func (h *Handler) acquireRead(ctx context.Context, src *sourceSlots) string {
	w := slotWait{wait: h.readWait}
	defer w.stop()
	if src != nil && !w.take(ctx, src.slots) {
		return refusedSource
	}
	if !w.take(ctx, h.reads) {
		if src != nil {
			<-src.slots
		}
		return refusedAll
	}
	return ""
}

// slotWait takes slots within one wait, shared by all it takes.
type slotWait struct {
	wait    time.Duration
	t       *time.Timer // started by the first take that has to wait
	expired bool
}

// take puts a token in slots: at once, or within what is left of the wait
// (false once it has passed or ctx ended).
func (w *slotWait) take(ctx context.Context, slots chan struct{}) bool {
	select {
	case slots <- struct{}{}:
		return true
	default:
	}
	if w.expired || w.wait <= 0 {
		return false
	}
	if w.t == nil {
		w.t = time.NewTimer(w.wait)
	}
	select {
	case slots <- struct{}{}:
		return true
	case <-w.t.C:
	case <-ctx.Done():
	}
	w.expired = true
	return false
}

func (w *slotWait) stop() {
	if w.t != nil {
		w.t.Stop()
	}
}

// dropBody gives up on the rest of the request's body: the connection is
// closed after the answer, and the server does not wait for the body first.
func (h *Handler) dropBody(w http.ResponseWriter, rc *http.ResponseController) {
	w.Header().Set("Connection", "close")
	_ = rc.SetReadDeadline(time.Now())
}

// submit hands b to the submitter, which validates it and makes its job
// (broker.NewJob); the broker behind it refuses a repeat.
func (h *Handler) submit(w http.ResponseWriter, r *http.Request, b psengine.Bounty, delivery string) {
	job := broker.Job{ID: delivery, Bounty: b}
	if delivery == "" {
		// Keyed by phase too: an arbitration of a bounty is not a repeat
		// of its assertion.
		job.ID = b.ID.String() + "/" + string(cmp.Or(b.Phase, psengine.Assertion))
	}
	err := h.sub.SubmitJob(r.Context(), job)
	switch {
	case err == nil:
		if h.log.Enabled(r.Context(), slog.LevelDebug) {
			h.log.DebugContext(r.Context(), "webhook: bounty accepted", "bounty", b.ID, "delivery", delivery)
		}
		reply(w, http.StatusAccepted, statusAccepted, "")
	case errors.Is(err, psengine.ErrDuplicate):
		h.log.InfoContext(r.Context(), "webhook: repeated bounty acknowledged, not queued again", "delivery", delivery,
			"bounty", b.ID, "err", err)
		reply(w, http.StatusOK, statusDuplicate, "")
	case errors.Is(err, psengine.ErrMalformedBounty):
		h.reject(w, r, http.StatusBadRequest, err.Error())
	case errors.Is(err, psengine.ErrExpired):
		h.log.WarnContext(r.Context(), "webhook: expired bounty refused", "status", http.StatusUnprocessableEntity,
			"bounty", b.ID, "delivery", delivery, "err", err)
		reply(w, http.StatusUnprocessableEntity, statusExpired, err.Error())
	case errors.Is(err, psengine.ErrQueueFull):
		h.unavailable(w, r, b, "queue full, retry later", err)
	case errors.Is(err, psengine.ErrClosed):
		h.unavailable(w, r, b, "engine shut down", err)
	case r.Context().Err() != nil: // the sender went away; nobody reads this
		h.unavailable(w, r, b, "request cancelled", err)
	default:
		h.log.ErrorContext(r.Context(), "webhook: cannot queue bounty", "bounty", b.ID, "delivery", delivery, "err", err)
		h.unavailable(w, r, b, "cannot queue the bounty, retry later", err)
	}
}

func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, b psengine.Bounty, msg string, err error) {
	h.log.WarnContext(r.Context(), "webhook: bounty refused for now", "status", http.StatusServiceUnavailable, "bounty", b.ID,
		"delivery", logsafe.String(r.Header.Get(HeaderDelivery)), "err", err)
	w.Header().Set("Retry-After", h.retryAfter)
	reply(w, http.StatusServiceUnavailable, statusUnavailable, msg)
}

// maxReasonLen bounds the reason a rejection logs and answers: it may quote
// what the request sent (an id, a URL).
const maxReasonLen = 1024

func (h *Handler) reject(w http.ResponseWriter, r *http.Request, code int, msg string) {
	msg = logsafe.Cut(msg, maxReasonLen)
	h.log.WarnContext(r.Context(), "webhook: request rejected", "status", code, "reason", msg, "remote", r.RemoteAddr,
		"delivery", logsafe.String(r.Header.Get(HeaderDelivery)))
	reply(w, code, statusRejected, msg)
}

// errTooSlow: the body came slower than the minimum rate.
var errTooSlow = errors.New("webhook: body slower than the minimum rate")

// readBody reads the whole body, at most h.maxBody bytes; beyond, it stops
// and returns a *http.MaxBytesError. When the connection takes deadlines
// (deadlines), each read must end by the time the body would fall under
// the minimum rate (errTooSlow past it), or by the read timeout.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, rc *http.ResponseController, start time.Time, deadlines bool) ([]byte, error) {
	if r.ContentLength > h.maxBody {
		return nil, &http.MaxBytesError{Limit: h.maxBody}
	}
	rd := http.MaxBytesReader(w, r.Body, h.maxBody)
	size := int64(512)
	if r.ContentLength >= 0 {
		// Room to see EOF without growing; a large announced length is
		// not trusted with memory before the bytes arrive.
		size = min(r.ContentLength+1, 64<<10)
	}
	buf := make([]byte, 0, size)
	timeout := start.Add(h.readTimeout)
	rated := false // the deadline set is the rate's, not the timeout
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		if deadlines && h.minRate > 0 {
			// The next byte is due when the body so far, plus it, would
			// average the minimum rate since the grace.
			due := start.Add(h.rateGrace + time.Duration(float64(len(buf)+1)/float64(h.minRate)*float64(time.Second)))
			if due.Before(timeout) {
				rated = true
				_ = rc.SetReadDeadline(due)
			} else if rated {
				rated = false
				_ = rc.SetReadDeadline(timeout)
			}
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			if rated && errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, errTooSlow
			}
			return nil, err
		}
	}
}

// reply writes {"status":status} (and "error":msg when msg is not empty).
func reply(w http.ResponseWriter, code int, status, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if msg == "" {
		_, _ = io.WriteString(w, `{"status":"`+status+`"}`+"\n")
		return
	}
	quoted, _ := json.Marshal(msg) // a string always marshals
	_, _ = io.WriteString(w, `{"status":"`+status+`","error":`+string(quoted)+"}\n")
}
