package fetch_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/polyswarm/psengine/fetch"
)

func TestPublicAddress(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"8.8.8.8", true},
		{"2001:4860:4860::8888", true},
		{"127.0.0.1", false},
		{"::1", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false}, // cloud metadata
		{"fe80::1", false},
		{"fd00::1", false},
		{"100.64.0.1", false},
		{"0.0.0.0", false},
		{"::", false},
		{"224.0.0.1", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:8.8.8.8", true},
	} {
		if got := fetch.PublicAddress(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("PublicAddress(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestPublicOnlyRefusesLoopback(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("a refused address was reached")
	}))
	defer srv.Close()
	p := fetch.Remote()
	p.PublicOnly = true
	_, err := p.Fetch(context.Background(), srv.URL+"/artifact?token=secret", "")
	if !errors.Is(err, fetch.ErrNotAllowed) || !errors.Is(err, fetch.ErrNotPublic) {
		t.Fatalf("Fetch of a loopback URL with PublicOnly: %v, want ErrNotPublic and ErrNotAllowed", err)
	}
	want := "fetch: refused: GET " + srv.URL + "/artifact?...: 127.0.0.1 is not a public address (a loopback address; "
	if msg := err.Error(); !strings.HasPrefix(msg, want) || strings.Contains(msg, "scheme") || strings.Contains(msg, "secret") {
		t.Errorf("message %q, want it to start %q (no query, nothing about schemes)", msg, want)
	}
	assertOneLine(t, err)

	p.Client = srv.Client()
	if _, err := p.Fetch(context.Background(), srv.URL, ""); !errors.Is(err, fetch.ErrBadPolicy) {
		t.Errorf("PublicOnly with a Client of one's own: %v, want ErrBadPolicy", err)
	}

	p = fetch.Remote() // without PublicOnly the same URL is fetched
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	c, err := p.Fetch(context.Background(), srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// PublicOnlyControl's refusals match ErrNotPublic and ErrNotAllowed and say
// what kind of address was refused.
func TestPublicOnlyControl(t *testing.T) {
	for address, want := range map[string]string{
		"127.0.0.1:80":         "fetch: refused: 127.0.0.1 is not a public address (a loopback address; ",
		"[::1]:443":            "fetch: refused: ::1 is not a public address (a loopback address; ",
		"10.0.0.1:80":          "fetch: refused: 10.0.0.1 is not a public address (a private address; ",
		"[fd00::1]:80":         "fetch: refused: fd00::1 is not a public address (a private address; ",
		"169.254.169.254:80":   "fetch: refused: 169.254.169.254 is not a public address (a link-local address; ",
		"100.64.0.1:80":        "fetch: refused: 100.64.0.1 is not a public address (a shared (carrier-grade NAT) address; ",
		"0.0.0.0:80":           "fetch: refused: 0.0.0.0 is not a public address (the unspecified address; ",
		"224.0.0.1:80":         "fetch: refused: 224.0.0.1 is not a public address (a multicast address; ",
		"[::ffff:10.1.1.1]:80": "fetch: refused: ::ffff:10.1.1.1 is not a public address (a private address; ",
		"not-an-address":       `fetch: refused: cannot tell whether "not-an-address" is a public address: `,
		"8.8.8.8:443":          "",
	} {
		err := fetch.PublicOnlyControl("tcp", address, nil)
		if want == "" {
			if err != nil {
				t.Errorf("PublicOnlyControl(%s) = %v, want nil", address, err)
			}
			continue
		}
		if !errors.Is(err, fetch.ErrNotPublic) || !errors.Is(err, fetch.ErrNotAllowed) || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("PublicOnlyControl(%s) = %v, want ErrNotPublic and ErrNotAllowed, starting %q", address, err, want)
		}
	}
}
