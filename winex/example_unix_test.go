//go:build unix

package winex_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/polyswarm/psengine/winex"
)

// A native scanner runs through the same Run as a Windows one: set Cmd.Wine
// (or use wine.Command) to run it under Wine instead.
func ExampleRun() {
	res, err := winex.Run(context.Background(), winex.Cmd{
		Path: "/bin/sh",
		Args: []string{"-c", `printf 'sample.exe: Eicar-Test FOUND\r\n'; exit 1`},
	})
	fmt.Printf("%q %d %v\n", res.Stdout, res.ExitCode, err)

	// A deadline kills the program and everything it started.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res, err = winex.Run(ctx, winex.Cmd{Path: "/bin/sh", Args: []string{"-c", "sleep 60 & sleep 60"}})
	fmt.Println(res.ExitCode, errors.Is(err, winex.ErrKilled), errors.Is(err, context.DeadlineExceeded))
	// Output:
	// "sample.exe: Eicar-Test FOUND\n" 1 <nil>
	// -1 true true
}
