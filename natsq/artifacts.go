package natsq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/polyswarm/psengine/fetch"
)

// ArtifactScheme is the URI scheme of artifacts staged in the object store:
// natsobj://BUCKET/NAME. FetchPolicy registers it.
const ArtifactScheme = "natsobj"

// StageArtifact stores the content read from r in the artifact object
// store under name and returns the URI workers fetch it by (with a policy
// from FetchPolicy). A worker removes the object once the bounty is
// answered; ArtifactTTL removes it otherwise. Errors wrap ErrArtifact.
func (b *Broker) StageArtifact(ctx context.Context, name string, r io.Reader) (string, error) {
	obj, err := b.artifactStore(ctx)
	if err != nil {
		return "", err
	}
	if _, err := obj.Put(ctx, jetstream.ObjectMeta{Name: name}, r); err != nil {
		return "", fmt.Errorf("%w: put %s: %w", ErrArtifact, name, err)
	}
	return b.artifactURI(name), nil
}

func (b *Broker) artifactURI(name string) string {
	u := url.URL{Scheme: ArtifactScheme, Host: b.names.artifacts, Path: "/" + name}
	return u.String()
}

// artifactName returns the object name of a URI staged in this broker's
// store.
func (b *Broker) artifactName(uri string) (string, bool) {
	if !strings.HasPrefix(strings.ToLower(uri), ArtifactScheme+":") {
		return "", false
	}
	u, err := url.Parse(uri)
	if err != nil || u.Host != b.names.artifacts {
		return "", false
	}
	name := strings.TrimPrefix(u.Path, "/")
	return name, name != ""
}

// FetchPolicy returns p with the artifact scheme registered, so an engine
// using it reads artifacts staged by submitters on other machines. Use it
// with psengine.WithFetchPolicy on workers; WorkerOptions does, with
// fetch.Remote() and PublicOnly set. The artifact scheme reads the object
// store through the broker's NATS connection, so p.PublicOnly, which
// judges http and https connections only, does not affect it.
func (b *Broker) FetchPolicy(p fetch.Policy) fetch.Policy {
	openers := maps.Clone(p.Openers)
	if openers == nil {
		openers = make(map[string]fetch.Opener, 1)
	}
	openers[ArtifactScheme] = b.openArtifact
	p.Openers = openers
	return p
}

// openArtifact is the fetch.Opener of ArtifactScheme. Only this broker's
// own store may be read.
func (b *Broker) openArtifact(ctx context.Context, u *url.URL) (io.ReadCloser, error) {
	if u.Host != b.names.artifacts {
		return nil, fmt.Errorf("%w: %s://%s: not this queue's artifact store %q", fetch.ErrNotAllowed, ArtifactScheme, u.Host, b.names.artifacts)
	}
	name := strings.TrimPrefix(u.Path, "/")
	obj, err := b.artifactStore(ctx)
	if err != nil {
		return nil, err
	}
	res, err := obj.Get(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("%w: get %s: %w", ErrArtifact, name, err)
	}
	return res, nil
}

// removeArtifact deletes a staged artifact once its bounty is settled. A
// failure only leaves the object to ArtifactTTL.
func (b *Broker) removeArtifact(uri string) {
	name, ok := b.artifactName(uri)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	obj, err := b.artifactStore(ctx)
	if err == nil {
		err = obj.Delete(ctx, name)
	}
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		b.log.Warn("removing a staged artifact failed; ArtifactTTL will", "artifact", name, "err", err)
	}
}
