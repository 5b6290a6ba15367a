package pipeline_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/polyswarm/psengine/pipeline"
)

// A pipeline in the style of errgroup's md5all example: documents are read,
// hashed and reported concurrently, in input order, by a stage run by Stream;
// a panicking stage becomes an error, not a crash.
func Example_pipeline() {
	files := map[string]string{
		"a.txt":   "hello",
		"b.txt":   "world",
		"c.txt":   "",
		"bad.txt": "PANIC",
	}
	read := func(_ context.Context, name string) (string, error) {
		body, ok := files[name]
		if !ok {
			return "", fmt.Errorf("%s: not found", name)
		}
		return body, nil
	}
	hash := func(ctx context.Context, name string) ([sha256.Size]byte, error) {
		body, err := read(ctx, name)
		if err != nil {
			return [sha256.Size]byte{}, err
		}
		if body == "PANIC" {
			panic("hasher bug")
		}
		return sha256.Sum256([]byte(body)), nil
	}
	names := slices.Sorted(maps.Keys(files))
	names = append(names, "missing.txt")

	i := 0
	for sum, err := range pipeline.Stream(context.Background(), 2, slices.Values(names), hash) {
		if err != nil {
			fmt.Printf("%-11s error: %v\n", names[i], err)
		} else {
			fmt.Printf("%-11s %x\n", names[i], sum[:4])
		}
		i++
	}
	// Output:
	// a.txt       2cf24dba
	// b.txt       486ea462
	// bad.txt     error: pipeline: panic: hasher bug
	// c.txt       e3b0c442
	// missing.txt error: missing.txt: not found
}

func ExampleProtect() {
	hooks := []func(){
		func() { fmt.Println("hook 1 ran") },
		func() { panic("hook 2 is broken") },
		func() { fmt.Println("hook 3 ran") },
	}
	for _, h := range hooks {
		if err := pipeline.Protect(h); err != nil {
			fmt.Println("hook failed:", err)
		}
	}
	// Output:
	// hook 1 ran
	// hook failed: pipeline: panic: hook 2 is broken
	// hook 3 ran
}

func ExampleBounded() {
	started, release := make(chan struct{}), make(chan struct{})
	stuck := pipeline.Bounded(0, func(context.Context, string) (string, error) {
		close(started)
		<-release // ignores its context
		return "too late", nil
	})
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		<-started
		cancel(errors.New("user pressed Ctrl-C"))
	}()

	_, err := stuck(ctx, "job")
	fmt.Println(err)
	fmt.Println(errors.Is(err, pipeline.ErrAbandoned))
	close(release) // the abandoned stage returns now; its result is dropped

	_, err = stuck(ctx, "another job") // ctx is done: not even started
	fmt.Println(err)
	// Output:
	// pipeline: stage abandoned: user pressed Ctrl-C
	// true
	// pipeline: stage not started: user pressed Ctrl-C
}

func ExampleRetry() {
	calls := 0
	post := func(_ context.Context, body string) (int, error) {
		calls++
		fmt.Println("attempt", calls)
		switch calls {
		case 1:
			return 0, errors.New("connection reset")
		case 2:
			return 0, pipeline.RetryAfter(5*time.Millisecond, errors.New("429 Too Many Requests"))
		}
		return http.StatusOK, nil
	}
	b := pipeline.Backoff{Initial: time.Millisecond, MaxAttempts: 5}
	status, err := pipeline.Retry(b, post)(context.Background(), `{"verdict":"benign"}`)
	fmt.Println(status, err)
	// Output:
	// attempt 1
	// attempt 2
	// attempt 3
	// 200 <nil>
}

func ExamplePermanent() {
	calls := 0
	post := func(context.Context, string) (int, error) {
		calls++
		return 0, pipeline.Permanent(errors.New("400 Bad Request"))
	}
	_, err := pipeline.Retry(pipeline.Backoff{}, post)(context.Background(), "{}")
	fmt.Println(calls, err, errors.Is(err, pipeline.ErrPermanent))
	// Output:
	// 1 400 Bad Request true
}

func ExampleBackoff_Delay() {
	b := pipeline.Backoff{Initial: time.Second, Max: 10 * time.Second, Jitter: -1}
	for attempt := 1; attempt <= 6; attempt++ {
		fmt.Print(b.Delay(attempt), " ")
	}
	fmt.Println()
	// Output:
	// 1s 2s 4s 8s 10s 10s
}

func ExampleStream() {
	numbers := func(yield func(int) bool) {
		for i := 1; ; i++ { // endless: Stream reads only what it needs
			if !yield(i) {
				return
			}
		}
	}
	cube := func(_ context.Context, n int) (int, error) { return n * n * n, nil }
	for c, err := range pipeline.Stream(context.Background(), 3, numbers, cube) {
		if err != nil {
			fmt.Println(err)
			break
		}
		if c > 100 {
			break // cancels the cubes in flight and waits for them
		}
		fmt.Print(c, " ")
	}
	fmt.Println()
	// Output:
	// 1 8 27 64
}
