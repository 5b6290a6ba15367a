package deliver

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestBackoffGrowsWithinEqualJitterBounds(t *testing.T) {
	c := &Client{MinBackoff: 100 * time.Millisecond, MaxBackoff: 3 * time.Second}
	wantCeil := []time.Duration{
		100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3 * time.Second, 3 * time.Second, 3 * time.Second,
	}
	for i, ceil := range wantCeil {
		n := i + 1
		distinct := map[time.Duration]bool{}
		for range 500 {
			d := c.backoff().Delay(n)
			if d < ceil/2 || d > ceil {
				t.Fatalf("backoff().Delay(%d) = %v, want within [%v, %v]", n, d, ceil/2, ceil)
			}
			distinct[d] = true
		}
		if len(distinct) < 10 {
			t.Errorf("backoff(%d) took only %d distinct values in 500 draws: no jitter?", n, len(distinct))
		}
	}
}

func TestBackoffDefaultsAndOddSettings(t *testing.T) {
	tests := []struct {
		name   string
		c      Client
		n      int
		lo, hi time.Duration
	}{
		{"zero value first retry", Client{}, 1, DefaultMinBackoff / 2, DefaultMinBackoff},
		{"zero value saturates at default max", Client{}, 40, DefaultMaxBackoff / 2, DefaultMaxBackoff},
		{"max below min is raised to min", Client{MinBackoff: 2 * time.Second, MaxBackoff: time.Second}, 5, time.Second, 2 * time.Second},
		{"huge max does not overflow", Client{MinBackoff: time.Second, MaxBackoff: math.MaxInt64}, 200, math.MaxInt64 / 2, math.MaxInt64},
		{"nanosecond min", Client{MinBackoff: 1, MaxBackoff: 1}, 3, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 100 {
				if d := tt.c.backoff().Delay(tt.n); d < tt.lo || d > tt.hi {
					t.Fatalf("backoff().Delay(%d) = %v, want within [%v, %v]", tt.n, d, tt.lo, tt.hi)
				}
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"0", 0, true},
		{"120", 120 * time.Second, true},
		{"  7 ", 7 * time.Second, true},
		{"007", 7 * time.Second, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{"Wednesday, 01-May-24 12:00:30 GMT", 30 * time.Second, true}, // RFC 850
		{"Wed May  1 12:01:00 2024", time.Minute, true},               // ANSI C asctime
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},        // past date: no wait
		{"99999999999999999999999", math.MaxInt64, true},              // saturates
		{strconv.FormatUint(math.MaxInt64/uint64(time.Second)+1, 10), math.MaxInt64, true},
		{"", 0, false},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"+3", 0, false},
		{"soon", 0, false},
		{"12 s", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{
		"0", "120", " 5 ", "007", "-1", "1.5", "", "99999999999999999999",
		"Wed, 21 Oct 2015 07:28:00 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
		"Wed, 21 Oct 2015 07:28:00 PST", "\x00", "１２", // full-width digits are not DIGIT
	} {
		f.Add(s)
	}
	now := time.Date(2015, 10, 21, 7, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseRetryAfter(s, now)
		if d < 0 {
			t.Fatalf("parseRetryAfter(%q) = %v: negative wait", s, d)
		}
		if !ok {
			if d != 0 {
				t.Fatalf("parseRetryAfter(%q) = %v, false: want 0 with false", s, d)
			}
			return
		}
		v := strings.TrimSpace(s)
		if isDigits(v) {
			if n, err := strconv.ParseUint(v, 10, 64); err == nil && n <= math.MaxInt64/uint64(time.Second) {
				if d != time.Duration(n)*time.Second {
					t.Fatalf("parseRetryAfter(%q) = %v, want %ds", s, d, n)
				}
			} else if d != math.MaxInt64 {
				t.Fatalf("parseRetryAfter(%q) = %v, want saturation", s, d)
			}
			return
		}
		when, err := http.ParseTime(v)
		if err != nil {
			t.Fatalf("parseRetryAfter(%q) accepted a value that is neither digits nor an HTTP date", s)
		}
		if want := max(when.Sub(now), 0); d != want {
			t.Fatalf("parseRetryAfter(%q) = %v, want %v", s, d, want)
		}
	})
}

func TestRedactDropsSecrets(t *testing.T) {
	req, err := (&Client{}).newRequest("https://user:pw@api.example/v1/answer/42?token=s3cret#frag", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := redact(req.URL), "https://api.example/v1/answer/42"; got != want {
		t.Errorf("redact = %q, want %q", got, want)
	}
}
