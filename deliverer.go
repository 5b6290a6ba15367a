package psengine

import (
	"context"
	"encoding/json"

	"github.com/polyswarm/psengine/deliver"
)

// HTTPDeliverer returns the Deliverer the engine uses by default: the
// answer as JSON, POSTed by c to the bounty's response URL and retried on
// transient failures until the bounty's expiration (see deliver.Client).
// A failure c reports as permanent already wraps ErrPermanent, so that a
// broker does not redeliver the bounty. Use it to configure delivery (a
// PublicOnly client, timeouts) with WithDeliverer.
func HTTPDeliverer(c *deliver.Client) Deliverer {
	if c == nil {
		c = &deliver.Client{}
	}
	return &httpDeliverer{client: c}
}

// httpDeliverer is HTTPDeliverer's.
type httpDeliverer struct {
	client *deliver.Client
}

func (d *httpDeliverer) Deliver(ctx context.Context, b Bounty, answer Answer) error {
	body, err := json.Marshal(answer)
	if err != nil {
		return Permanent(err)
	}
	_, err = d.client.Post(ctx, b.ResponseURL, body, b.Expiration)
	return err
}
