package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"iter"
	"log/slog"
	"time"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/fetch"
)

// batchConfig shapes `analyze --backend NAME`.
type batchConfig struct{}

// remoteResults answers the arguments through a backend session, in
// argument order. Arguments that cannot be turned into a bounty fail alone.
func (p *Program) remoteResults(ctx context.Context, sess Session, _ *slog.Logger, kind string, ins []input, _ batchConfig) iter.Seq[analyzed] {
	return func(yield func(analyzed) bool) {
		reqs := make([]Request, 0, len(ins))
		failed := make([]psengine.Result, len(ins))
		now := time.Now()
		for i, in := range ins {
			if in.err != nil {
				failed[i] = psengine.Result{Err: in.err}
				continue
			}
			req, err := p.request(ctx, kind, in.name, now)
			if err != nil {
				failed[i] = psengine.Result{Bounty: req.Bounty, Err: err}
				continue
			}
			reqs = append(reqs, req)
		}
		defer func() {
			for _, r := range reqs {
				if r.Content != nil {
					_ = r.Content.Close()
				}
			}
		}()
		next, stop := iter.Pull(sess.Analyze(ctx, reqs))
		defer stop()
		for i := range ins {
			res := failed[i]
			if res.Err == nil {
				var ok bool
				if res, ok = next(); !ok {
					res = psengine.Result{Err: fmt.Errorf("%w: the backend gave no result", psengine.ErrClosed)}
				}
			}
			if !yield(analyzed{name: ins[i].name, res: res, took: max(time.Since(now), time.Nanosecond)}) {
				return
			}
		}
	}
}

// request makes the bounty for one argument of `analyze --backend`, the
// way Engine.Analyze forges local bounties, keeping the content of local
// inputs for the backend to stage.
func (p *Program) request(ctx context.Context, kind, arg string, now time.Time) (Request, error) {
	local := fetch.Local()
	local.Stdin = p.Stdin
	switch kind {
	case "url":
		sum := sha256.Sum256([]byte(arg))
		return Request{Bounty: psengine.LocalBounty(psengine.URLArtifact, arg, hex.EncodeToString(sum[:]),
			psengine.URIListType, now, psengine.DefaultLocalTTL)}, nil
	case "bounty":
		b, err := p.readBounty(arg)
		if err != nil {
			return Request{}, err
		}
		if b.ArtifactType != psengine.FileArtifact || !isLocalURI(b.ArtifactURI) {
			return Request{Bounty: b}, nil
		}
		c, err := local.Fetch(ctx, b.ArtifactURI, b.SHA256)
		if err != nil {
			return Request{Bounty: b}, fmt.Errorf("%w: %w", psengine.ErrFetch, err)
		}
		return Request{Bounty: b, Content: c}, nil
	default:
		c, err := local.Fetch(ctx, arg, "")
		if err != nil {
			return Request{}, fmt.Errorf("%w: %w", psengine.ErrFetch, err)
		}
		b := psengine.LocalBounty(psengine.FileArtifact, arg, c.SHA256(), psengine.DetectMIMEType(c.Head()), now, psengine.DefaultLocalTTL)
		if !isLocalURI(arg) {
			_ = c.Close() // http(s) and data: travel as they are
			c = nil
		}
		return Request{Bounty: b, Content: c}, nil
	}
}
