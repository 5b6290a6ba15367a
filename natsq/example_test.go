package natsq_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/polyswarm/psengine/broker"

	"github.com/polyswarm/psengine"
	eicar "github.com/polyswarm/psengine/examples/eicar/engine"
	"github.com/polyswarm/psengine/fetch"
	"github.com/polyswarm/psengine/natsq"
	"github.com/polyswarm/psengine/natsq/embedded"
	"github.com/polyswarm/psengine/psenginetest"
)

// A queue on an embedded server: a job submitted twice is delivered once.
func Example() {
	dir, _ := os.MkdirTemp("", "natsq-example")
	defer os.RemoveAll(dir)
	srv, err := embedded.Start(embedded.Options{StoreDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	nc, _ := srv.Connect()
	defer nc.Close()

	b, _ := natsq.New(nc, natsq.Config{Prefix: "example"})
	ctx := context.Background()
	if err := b.Provision(ctx); err != nil {
		fmt.Println(err)
		return
	}
	bounty := psenginetest.Bounty([]byte("some file"), psenginetest.WithID("42"))
	_ = b.Submit(ctx, broker.Job{Bounty: bounty})
	_ = b.Submit(ctx, broker.Job{Bounty: bounty}) // a duplicate: dropped by the server

	ctx, cancel := context.WithCancel(ctx)
	err = b.Consume(ctx, func(_ context.Context, job broker.Job) error {
		fmt.Println("job", job.ID, "attempt", job.Attempt)
		cancel() // one is enough for the example
		return nil
	})
	fmt.Println("consumer stopped:", err)
	// Output:
	// job 42 attempt 1
	// consumer stopped: context canceled
}

// The analyze flow: a worker engine serves the queue; the submitter stages
// a local artifact and waits for the answers, in order.
func ExampleBroker_Analyze() {
	dir, _ := os.MkdirTemp("", "natsq-example")
	defer os.RemoveAll(dir)
	srv, err := embedded.Start(embedded.Options{StoreDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	nc, _ := srv.Connect()
	defer nc.Close()
	b, _ := natsq.New(nc, natsq.Config{Prefix: "analyze_example"})
	if err := b.Provision(context.Background()); err != nil {
		fmt.Println(err)
		return
	}

	// A worker (it could be on another machine, with its own connection).
	worker := psengine.New(eicar.Scanner{}, append(b.WorkerOptions(), psengine.WithBroker(b),
		psengine.WithGetenv(func(k string) string { return map[string]string{"PSENGINE_HOME": dir, "PSENGINE_RUNTIME_DIR": dir}[k] }))...)
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- worker.Serve(ctx) }()
	defer func() { stop(); <-served; _ = worker.Shutdown(context.Background()) }()

	sample := psenginetest.EICAR()
	local := natsq.Request{ // read here, staged for the worker
		Bounty:  psengine.LocalBounty(psengine.FileArtifact, "sample.com", psenginetest.SHA256(sample), "", time.Now(), time.Minute),
		Content: fetch.FromBytes(sample),
	}
	inline := natsq.Request{Bounty: psenginetest.Bounty([]byte("harmless"), psenginetest.WithID("7"))}
	for res := range b.Analyze(context.Background(), []natsq.Request{local, inline}) {
		fmt.Println(res.Bounty.ArtifactURI[:10], res.Analysis.Verdict, res.Analysis.Metadata.MalwareFamily)
	}
	// Output:
	// sample.com malicious EICAR-Test-File
	// data:appli unknown
}
