package deliver

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/polyswarm/psengine/pipeline"
)

// isPublic judges the address dialled, whatever its form.
func TestRefuseUnlessPublic(t *testing.T) {
	control := refuseUnless(isPublic)
	for _, tt := range []struct {
		address string
		allowed bool
	}{
		{"127.0.0.1:80", false},
		{"127.1.2.3:443", false},
		{"[::1]:443", false},
		{"10.0.0.7:80", false},
		{"172.16.0.1:80", false},
		{"192.168.1.1:8080", false},
		{"100.64.0.1:80", false},           // shared address space
		{"169.254.169.254:80", false},      // cloud metadata
		{"[fe80::1%eth0]:80", false},       // link-local, zoned
		{"[fd00::1]:80", false},            // unique local
		{"[::ffff:192.168.1.1]:80", false}, // IPv4-mapped
		{"[::ffff:169.254.169.254]:80", false},
		{"0.0.0.0:80", false},
		{"[::]:80", false},
		{"224.0.0.1:80", false},
		{"not an address", false},
		{"8.8.8.8:443", true},
		{"[2001:4860:4860::8888]:443", true},
		{"[::ffff:8.8.8.8]:443", true},
	} {
		err := control("tcp", tt.address, nil)
		if got := err == nil; got != tt.allowed {
			t.Errorf("control(%q) = %v, want allowed %v", tt.address, err, tt.allowed)
		}
		if err != nil && !errors.Is(err, ErrNotPublic) {
			t.Errorf("control(%q) = %v, want ErrNotPublic", tt.address, err)
		}
	}
}

// The default PublicOnly client uses no proxy (it would dial unchecked);
// the plain default client honours the environment's.
func TestPublicOnlyClientHasNoProxy(t *testing.T) {
	if defaultPublicHTTP.Transport.(*http.Transport).Proxy != nil {
		t.Error("the PublicOnly client uses a proxy")
	}
	if defaultHTTP.Transport.(*http.Transport).Proxy == nil {
		t.Error("the default client ignores the environment's proxy")
	}
	if defaultPublicHTTP.CheckRedirect == nil {
		t.Error("the PublicOnly client follows redirects other than 307 and 308")
	}
}

// A 307 from an allowed address to a refused one is refused in the dialer:
// the redirect target never sees the answer, and the failure is permanent.
func TestPublicOnlyJudgesRedirectTargets(t *testing.T) {
	var hits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer target.Close()
	origin := httptest.NewServer(http.RedirectHandler(target.URL+"/answer", http.StatusTemporaryRedirect))
	defer origin.Close()

	allowedAddr := netip.MustParseAddrPort(origin.Listener.Addr().String())
	synctest.Test(t, func(t *testing.T) {
		hc := publicOnlyHTTP(func(ap netip.AddrPort) bool { return ap == allowedAddr })
		defer hc.CloseIdleConnections() // the bubble waits for the origin connection's goroutines
		c := &Client{HTTP: hc}
		rec, err := c.Post(t.Context(), origin.URL+"/answer", []byte(`{}`), time.Now().Add(time.Hour))
		if !errors.Is(err, pipeline.ErrPermanent) || !errors.Is(err, ErrNotPublic) {
			t.Fatalf("Post error = %v, want pipeline.ErrPermanent and ErrNotPublic", err)
		}
		if rec.Attempts != 1 || rec.Duration != 0 {
			t.Errorf("Receipt = %+v, want 1 attempt and no wait", rec)
		}
	})
	if hits.Load() != 0 {
		t.Errorf("the redirect target saw %d requests, want none", hits.Load())
	}
}
