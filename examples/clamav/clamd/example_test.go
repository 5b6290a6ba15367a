package clamd_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"

	"github.com/polyswarm/psengine/examples/clamav/clamd"
	"github.com/polyswarm/psengine/examples/clamav/internal/clamdtest"
)

// Scan a file through a clamd session. NewConn runs the session over any
// connection; here a fake clamd on the other end of a pipe, Dial connects
// to a real one.
func ExampleConn_InStream() {
	client, server := net.Pipe()
	go clamdtest.Serve(server, clamdtest.FakeConfig{Signatures: map[string][]byte{"Demo.Marker": []byte("MARKER")}})
	c, err := clamd.NewConn(client) // with a real clamd: clamd.Dial(ctx, addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx := context.Background()
	for _, content := range []string{"a MARKER inside", "nothing"} {
		f, err := os.CreateTemp("", "clamd-example")
		if err != nil {
			log.Fatal(err)
		}
		defer os.Remove(f.Name())
		fmt.Fprint(f, content)
		f.Seek(0, 0)
		reply, err := c.InStream(ctx, f) // streamed in chunks, never read whole
		f.Close()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(reply.Status, reply.Signature)
	}
	// Output:
	// FOUND Demo.Marker
	// OK
}

func ExampleParseAddress() {
	for _, s := range []string{"unix:/run/clamav/clamd.ctl", "tcp:127.0.0.1:3310", "/run/clamav/clamd.ctl"} {
		addr, err := clamd.ParseAddress(s)
		fmt.Printf("%q %q %v\n", addr.Network, addr.Addr, errors.Is(err, clamd.ErrAddress))
	}
	// Output:
	// "unix" "/run/clamav/clamd.ctl" false
	// "tcp" "127.0.0.1:3310" false
	// "" "" true
}

func ExampleParseVersion() {
	for _, s := range []string{"ClamAV 1.4.6", "ClamAV 1.4.6/42/Tue Jan 14 08:32:45 2025"} {
		v, _ := clamd.ParseVersion(s)
		fmt.Printf("engine %s, signatures %q, date %q\n", v.Engine, v.Signatures, v.Date)
	}
	// Output:
	// engine 1.4.6, signatures "", date ""
	// engine 1.4.6, signatures "42", date "Tue Jan 14 08:32:45 2025"
}

func ExampleParseReply() {
	for _, s := range []string{"stream: Win.Test.EICAR_HDB-1 FOUND", "stream: OK", "INSTREAM size limit exceeded. ERROR"} {
		r, _ := clamd.ParseReply(s)
		fmt.Printf("%s %q %v\n", r.Status, r.Signature, errors.Is(r.Err("INSTREAM"), clamd.ErrSizeLimit))
	}
	// Output:
	// FOUND "Win.Test.EICAR_HDB-1" false
	// OK "" false
	// ERROR "" true
}
