package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/localq"
)

// deadletters shows the bounties the queue gave up on and acts on them:
//
//	deadletters [list]       one line per dead letter (--json: one object per line)
//	deadletters requeue ID…  deliver them again, as new (with the answer kept, if any)
//	deadletters drop ID…     forget them
//
// With --backend local (the default) it opens the webhook's intake store,
// which one process at a time may hold: stop the webhook first. With a
// registered backend it acts on that queue's dead letters.
func (p *Program) deadletters(ctx context.Context, args []string) error {
	fs := newFlagSet("deadletters")
	run := p.addRunFlags(fs, "local")
	asJSON := fs.Bool("json", false, "list as JSON, one object per line")
	conns := p.backendFlags(fs)
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if err := run.check(p); err != nil {
		return err
	}
	verb, ids := "list", []string(nil)
	if len(rest) > 0 {
		verb, ids = rest[0], rest[1:]
	}
	switch {
	case verb != "list" && verb != "requeue" && verb != "drop":
		return usageError{fmt.Sprintf("deadletters %q: want list, requeue ID... or drop ID...", verb)}
	case verb == "list" && len(ids) > 0:
		return usageError{"deadletters list takes no arguments"}
	case verb != "list" && len(ids) == 0:
		return usageError{"deadletters " + verb + " needs the ids of the jobs (as list prints them)"}
	}
	log, err := p.newLogger(slog.LevelWarn)
	if err != nil {
		return err
	}
	store, closeStore, err := p.deadLetterStore(ctx, log, run.backend.queue, conns)
	if err != nil {
		return err
	}
	defer func() {
		if err := closeStore(); err != nil {
			log.ErrorContext(ctx, "closing the queue", "err", err)
		}
	}()
	if verb == "list" {
		letters, err := store.DeadLetters(ctx)
		if err != nil {
			return err
		}
		for _, d := range letters {
			p.printDeadLetter(d, *asJSON)
		}
		return nil
	}
	var failed []error
	for _, id := range ids {
		var err error
		if verb == "requeue" {
			err = store.Requeue(ctx, id)
		} else {
			err = store.Drop(ctx, id)
		}
		if err != nil {
			failed = append(failed, err)
			fmt.Fprintf(p.Stderr, "%s: %s %s: %s\n", p.Name, verb, id, oneLine(err))
			continue
		}
		fmt.Fprintf(p.Stdout, "%s %s\n", map[string]string{"requeue": "requeued", "drop": "dropped"}[verb], id)
	}
	if len(failed) > 0 {
		return errReported
	}
	return nil
}

// deadLetterStore opens the queue whose dead letters deadletters acts on.
func (p *Program) deadLetterStore(ctx context.Context, log *slog.Logger, queue string, conns map[string]Connector) (broker.DeadLetterStore, func() error, error) {
	if queue == "" || queue == "local" {
		q, err := p.openIntakeStore(ctx, log)
		if errors.Is(err, localq.ErrLocked) {
			return nil, nil, fmt.Errorf("%w (stop the webhook that holds it first)", err)
		}
		if err != nil {
			return nil, nil, err
		}
		return q, q.Release, nil
	}
	sess, err := conns[queue](ctx, log)
	if err != nil {
		return nil, nil, err
	}
	store, ok := sess.Broker().(broker.DeadLetterStore)
	if !ok {
		_ = sess.Close()
		return nil, nil, fmt.Errorf("the %s backend does not keep dead letters an operator can act on", queue)
	}
	return store, sess.Close, nil
}

// deadLetterLine is a dead letter as `deadletters list --json` prints it.
type deadLetterLine struct {
	ID         string            `json:"id"`
	Bounty     string            `json:"bounty"`
	Attempts   int               `json:"attempts"`
	At         time.Time         `json:"at,omitzero"`
	Expiration time.Time         `json:"expiration,omitzero"`
	Reason     string            `json:"reason"`
	Answer     *psengine.Verdict `json:"answer,omitempty"` // the verdict kept, if any
}

func (p *Program) printDeadLetter(d broker.DeadLetter, asJSON bool) {
	line := deadLetterLine{ID: d.Job.ID, Bounty: d.Job.Bounty.ID.String(), Attempts: d.Job.Attempt, At: d.At,
		Expiration: d.Job.Bounty.Expiration}
	if d.Err != nil {
		line.Reason = oneLine(d.Err)
	}
	if a := d.Job.Answer; a != nil {
		line.Answer = &a.Verdict
	}
	if asJSON {
		_ = json.NewEncoder(p.Stdout).Encode(line) // plain fields: cannot fail
		return
	}
	fmt.Fprintf(p.Stdout, "%s\tbounty %s\tattempts %d\t%s\t%s\n", line.ID, line.Bounty, line.Attempts,
		line.At.Format(time.RFC3339), line.Reason)
}
