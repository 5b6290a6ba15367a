package natscli_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/natsq"
	"github.com/polyswarm/psengine/natsq/embedded"
	"github.com/polyswarm/psengine/psenginetest"
)

// `deadletters --backend nats` lists, requeues and drops the dead letters
// of the queue (natsq.Broker is a broker.DeadLetterStore).
func TestDeadLettersOverNATS(t *testing.T) {
	srv, err := embedded.Start(embedded.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b, err := natsq.New(nc, natsq.Config{Prefix: "dl"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := b.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"111", "222"} {
		bounty := psenginetest.Bounty([]byte(id), psenginetest.WithID(id), psenginetest.WithExpiration(time.Now().Add(time.Hour)))
		job, err := broker.NewJob("job-"+id, bounty, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Submit(ctx, job); err != nil {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	fixed := make(chan struct{})
	requeued := make(chan broker.Job, 1)
	go func() {
		done <- b.Consume(cctx, func(_ context.Context, j broker.Job) error {
			select {
			case <-fixed:
				requeued <- j
				return nil
			default:
				return psengine.Permanent(errors.New("the scanner refuses it for now"))
			}
		})
	}()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(time.Minute)
	for {
		dls, err := b.DeadLetters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(dls) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d dead letters, want 2", len(dls))
		}
		time.Sleep(5 * time.Millisecond)
	}

	run := func(args ...string) (int, string, string) {
		p, out, errs := program(t, "")
		code := p.Run(ctx, append([]string{"deadletters", "--backend", "nats", "--nats-url", srv.ClientURL(), "--nats-prefix", "dl"}, args...))
		return code, out.String(), errs.String()
	}
	code, out, errs := run("list")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, "job-111\tbounty 111\tattempts 1\t") ||
		!strings.Contains(out, "the scanner refuses it for now") {
		t.Fatalf("list: exit %d\n%s%s", code, out, errs)
	}
	close(fixed)
	if code, out, errs := run("requeue", "job-111"); code != 0 || out != "requeued job-111\n" {
		t.Fatalf("requeue: exit %d\n%s%s", code, out, errs)
	}
	select {
	case j := <-requeued:
		if j.ID != "job-111" || j.Attempt != 1 {
			t.Errorf("requeued job %s, attempt %d", j.ID, j.Attempt)
		}
	case <-time.After(time.Minute):
		t.Fatal("the requeued job was not delivered")
	}
	if code, out, errs := run("drop", "job-222", "job-333"); code != 1 || out != "dropped job-222\n" || !strings.Contains(errs, "job-333") {
		t.Errorf("drop: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs := run("list"); code != 0 || out != "" {
		t.Errorf("list at the end: exit %d\n%s%s", code, out, errs)
	}
}
