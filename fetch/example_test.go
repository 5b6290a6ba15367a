package fetch_test

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/polyswarm/psengine/fetch"
)

func ExampleFromBytes() {
	// A URL artifact's content is the URL text.
	c := fetch.FromBytes([]byte("hello"))
	defer c.Close()
	fmt.Println(c.Size(), c.SHA256())
	// Output: 5 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824
}

func ExamplePolicy_Fetch() {
	ctx := context.Background()
	uri := "data:text/plain;base64,SGVsbG8sIFdvcmxkIQ=="
	c, err := fetch.Remote().Fetch(ctx, uri, "dffd6021bb2bd5b0af676290809ec3a53191dd81c7f70a4b28688a362182986f")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	r, err := c.Open()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	body, _ := io.ReadAll(r)
	fmt.Printf("%d bytes: %s\n", c.Size(), body)
	// Output: 13 bytes: Hello, World!
}

func ExamplePolicy_Fetch_refused() {
	_, err := fetch.Remote().Fetch(context.Background(), "file:///etc/passwd", "")
	fmt.Println(errors.Is(err, fetch.ErrNotAllowed))
	fmt.Println(err)
	// Output:
	// true
	// fetch: scheme not allowed: "file" (local files); this policy allows data, http, https
}

func ExampleParseDataURI() {
	d, err := fetch.ParseDataURI("data:text/plain;charset=utf-8;base64,w6l0w6k=")
	if err != nil {
		fmt.Println(err)
		return
	}
	payload, _ := io.ReadAll(d.Reader())
	fmt.Println(d.MediaType, d.Params["charset"], d.Size(), string(payload))
	// Output: text/plain utf-8 5 été
}
