package fetch_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
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
	_, err := p.Fetch(context.Background(), srv.URL+"/artifact", "")
	if !errors.Is(err, fetch.ErrNotAllowed) {
		t.Fatalf("Fetch of a loopback URL with PublicOnly: %v, want ErrNotAllowed", err)
	}

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
