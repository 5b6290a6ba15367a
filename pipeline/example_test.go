package pipeline_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/polyswarm/psengine/pipeline"
)

// A pipeline in the style of errgroup's md5all example: documents are read,
// hashed and reported concurrently, in input order, by stages composed with
// Then and run by Stream; a panicking stage becomes an error, not a crash.
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
	hash := func(_ context.Context, body string) ([sha256.Size]byte, error) {
		if body == "PANIC" {
			panic("hasher bug")
		}
		return sha256.Sum256([]byte(body)), nil
	}
	names := slices.Sorted(maps.Keys(files))
	names = append(names, "missing.txt")

	i := 0
	for sum, err := range pipeline.Stream(context.Background(), 2, slices.Values(names), pipeline.Then(read, hash)) {
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

func ExampleThen() {
	parse := func(_ context.Context, s string) (int, error) { return strconv.Atoi(s) }
	square := func(_ context.Context, n int) (int, error) { return n * n, nil }
	parseAndSquare := pipeline.Then(parse, square)

	fmt.Println(parseAndSquare(context.Background(), "12"))
	fmt.Println(parseAndSquare(context.Background(), "twelve"))
	// Output:
	// 144 <nil>
	// 0 strconv.Atoi: parsing "twelve": invalid syntax
}

func ExampleRecover() {
	divide := pipeline.Recover(func(_ context.Context, n int) (int, error) {
		return 100 / n, nil
	})
	_, err := divide(context.Background(), 0)
	fmt.Println(err)
	var pe *pipeline.PanicError
	fmt.Println(errors.As(err, &pe), len(pe.Stack) > 0)
	// Output:
	// pipeline: panic: runtime error: integer divide by zero
	// true true
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

func ExampleTimeout() {
	slow := func(ctx context.Context, url string) (int, error) {
		<-ctx.Done() // a stage that never gets an answer
		return 0, ctx.Err()
	}
	_, err := pipeline.Timeout(10*time.Millisecond, slow)(context.Background(), "https://example.invalid/")
	fmt.Println(errors.Is(err, pipeline.ErrTimeout), errors.Is(err, context.DeadlineExceeded))
	// Output:
	// true true
}

func ExampleRetry() {
	calls := 0
	post := func(ctx context.Context, body string) (int, error) {
		calls++
		fmt.Println("attempt", pipeline.Attempt(ctx))
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

func ExampleMapAll() {
	urls := []string{"file:///a", "ftp://b", "data:,c"}
	scheme := func(_ context.Context, u string) (string, error) {
		s, _, ok := strings.Cut(u, ":")
		if !ok || s == "ftp" {
			return "", fmt.Errorf("unsupported URI %q", u)
		}
		return s, nil
	}
	outs, errs := pipeline.MapAll(context.Background(), 2, urls, scheme)
	for i := range urls {
		fmt.Printf("%q %v\n", outs[i], errs[i])
	}
	// Output:
	// "file" <nil>
	// "" unsupported URI "ftp://b"
	// "data" <nil>
}

func ExampleMap() {
	lengths, err := pipeline.Map(context.Background(), 4, []string{"a", "bb", "ccc"},
		func(_ context.Context, s string) (int, error) { return len(s), nil })
	fmt.Println(lengths, err)

	_, err = pipeline.Map(context.Background(), 4, []string{"a", "", "ccc"},
		func(_ context.Context, s string) (int, error) {
			if s == "" {
				return 0, errors.New("empty input")
			}
			return len(s), nil
		})
	fmt.Println(err)
	// Output:
	// [1 2 3] <nil>
	// empty input
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
