package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/polyswarm/psengine"
)

// Submitter takes the bounties the handler accepts. *psengine.Engine is one:
// SubmitJob returns once the job is queued, with an error wrapping
// psengine.ErrQueueFull (answered 503, retry later), psengine.ErrClosed
// (503: shut down) or psengine.ErrMalformedBounty (400).
type Submitter interface {
	SubmitJob(ctx context.Context, job psengine.Job) error
}

// SubmitFunc adapts a function to Submitter.
type SubmitFunc func(ctx context.Context, job psengine.Job) error

// SubmitJob calls f.
func (f SubmitFunc) SubmitJob(ctx context.Context, job psengine.Job) error { return f(ctx, job) }

var _ Submitter = (*psengine.Engine)(nil)

// Handler is PolySwarm's webhook intake (see the package documentation for
// every answer). Make one with NewHandler; it is safe for concurrent use.
// ServeHTTP blocks only for reading the body and queueing the bounty.
type Handler struct {
	sub        Submitter
	secret     []byte   // nil: insecure mode
	macs       *macPool // keyed with secret
	maxBody    int64
	retryAfter string
	log        *slog.Logger
	seen       *dedupe // nil: no memory of delivery ids

	reads       chan struct{} // a slot per body being read
	readWait    time.Duration
	readTimeout time.Duration
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
		maxBody:      DefaultMaxBody,
		dedupeWindow: DefaultDedupeWindow,
		dedupeSize:   DefaultDedupeSize,
		retryAfter:   DefaultRetryAfter,
		logger:       slog.New(slog.DiscardHandler),
		maxReads:     DefaultMaxReads,
		readWait:     DefaultReadWait,
		readTimeout:  DefaultReadTimeout,
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
		secret:     cfg.secret,
		maxBody:    cfg.maxBody,
		retryAfter: strconv.FormatInt(int64(math.Ceil(cfg.retryAfter.Seconds())), 10),
		log:        cfg.logger,

		reads:       make(chan struct{}, cfg.maxReads),
		readWait:    cfg.readWait,
		readTimeout: cfg.readTimeout,
	}
	if cfg.dedupeWindow > 0 && cfg.dedupeSize > 0 {
		h.seen = newDedupe(cfg.dedupeWindow, cfg.dedupeSize)
	}
	if h.secret != nil {
		h.macs = newMACPool(h.secret)
	}
	if h.secret == nil {
		h.log.Warn("webhook: INSECURE: no secret, requests are not authenticated; anyone who can reach this server can submit bounties")
	}
	return h, nil
}

var errDeliveryInFlight = errors.New("webhook: the same delivery is being queued")

// Answers' status words.
const (
	statusOK          = "OK"
	statusAccepted    = "ACCEPTED"
	statusDuplicate   = "DUPLICATE"
	statusRejected    = "REJECTED"
	statusUnavailable = "UNAVAILABLE"
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
	// body (where the connection supports deadlines).
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(h.readTimeout))

	signature := r.Header.Get(HeaderSignature)
	if h.secret != nil && signature == "" {
		h.dropBody(w, rc)
		h.reject(w, r, http.StatusBadRequest, ErrMissingSignature.Error())
		return
	}
	if !h.acquireRead(r.Context()) {
		h.dropBody(w, rc)
		h.log.Warn("webhook: request refused for now: too many bodies being read", "status", http.StatusServiceUnavailable,
			"remote", r.RemoteAddr, "reading", cap(h.reads))
		w.Header().Set("Retry-After", h.retryAfter)
		reply(w, http.StatusServiceUnavailable, statusUnavailable, "too many requests being read, retry later")
		return
	}
	body, err := h.readBody(w, r)
	<-h.reads
	if err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			h.reject(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", h.maxBody))
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
	_ = rc.SetReadDeadline(time.Time{})
	if h.secret != nil {
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
	if err == nil {
		err = b.Validate()
	}
	for _, warning := range b.Warnings {
		if err == nil {
			h.log.Warn("webhook: bounty accepted as is", "bounty", b.ID.String(), "delivery", delivery, "warning", warning)
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

// acquireRead takes a slot to read a body, waiting up to h.readWait; false
// when none came (or the request ended).
func (h *Handler) acquireRead(ctx context.Context) bool {
	select {
	case h.reads <- struct{}{}:
		return true
	default:
	}
	if h.readWait <= 0 {
		return false
	}
	t := time.NewTimer(h.readWait)
	defer t.Stop()
	select {
	case h.reads <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// dropBody gives up on the rest of the request's body: the connection is
// closed after the answer, and the server does not wait for the body first.
func (h *Handler) dropBody(w http.ResponseWriter, rc *http.ResponseController) {
	w.Header().Set("Connection", "close")
	_ = rc.SetReadDeadline(time.Now())
}

// submit queues b, once per delivery id within the dedupe window.
func (h *Handler) submit(w http.ResponseWriter, r *http.Request, b psengine.Bounty, delivery string) {
	job := psengine.Job{ID: delivery, Bounty: b}
	if delivery == "" {
		// Keyed by phase too: an arbitration of a bounty is not a repeat
		// of its assertion.
		job.ID = b.ID.String() + "/" + string(b.Phase)
	}
	var token uint64
	if h.seen != nil && delivery != "" {
		var res claimResult
		switch res, token = h.seen.claim(delivery, time.Now()); res {
		case repeated:
			h.log.Info("webhook: repeated delivery acknowledged, not queued again", "delivery", delivery, "bounty", b.ID.String())
			reply(w, http.StatusOK, statusDuplicate, "")
			return
		case inFlight: // not acknowledged: the first copy may yet be refused
			h.unavailable(w, r, b, "the same delivery is being queued, retry later", errDeliveryInFlight)
			return
		}
	}
	err := h.sub.SubmitJob(r.Context(), job)
	if err == nil {
		if token != 0 {
			h.seen.confirm(delivery, token)
		}
		if h.log.Enabled(r.Context(), slog.LevelDebug) {
			h.log.Debug("webhook: bounty accepted", "bounty", b.ID.String(), "delivery", delivery)
		}
		reply(w, http.StatusAccepted, statusAccepted, "")
		return
	}
	if token != 0 {
		h.seen.release(delivery, token) // not taken: the retry must be
	}
	switch {
	case errors.Is(err, psengine.ErrMalformedBounty):
		h.reject(w, r, http.StatusBadRequest, err.Error())
	case errors.Is(err, psengine.ErrQueueFull):
		h.unavailable(w, r, b, "queue full, retry later", err)
	case errors.Is(err, psengine.ErrClosed):
		h.unavailable(w, r, b, "engine shut down", err)
	case r.Context().Err() != nil: // the sender went away; nobody reads this
		h.unavailable(w, r, b, "request cancelled", err)
	default:
		h.log.Error("webhook: cannot queue bounty", "bounty", b.ID.String(), "delivery", delivery, "err", err)
		h.unavailable(w, r, b, "cannot queue the bounty, retry later", err)
	}
}

func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, b psengine.Bounty, msg string, err error) {
	h.log.Warn("webhook: bounty refused for now", "status", http.StatusServiceUnavailable, "bounty", b.ID.String(),
		"delivery", r.Header.Get(HeaderDelivery), "err", err)
	w.Header().Set("Retry-After", h.retryAfter)
	reply(w, http.StatusServiceUnavailable, statusUnavailable, msg)
}

func (h *Handler) reject(w http.ResponseWriter, r *http.Request, code int, msg string) {
	h.log.Warn("webhook: request rejected", "status", code, "reason", msg, "remote", r.RemoteAddr,
		"delivery", r.Header.Get(HeaderDelivery))
	reply(w, code, statusRejected, msg)
}

// readBody reads the whole body, at most h.maxBody bytes; beyond, it stops
// and returns a *http.MaxBytesError.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
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
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
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
