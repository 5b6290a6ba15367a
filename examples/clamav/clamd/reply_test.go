package clamd_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/polyswarm/psengine/examples/clamav/clamd"
)

func TestParseReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want clamd.Reply
	}{
		{"stream: OK", clamd.Reply{Name: "stream", Status: clamd.StatusOK}},
		{"stream: Eicar-Test-Signature FOUND", clamd.Reply{Name: "stream", Status: clamd.StatusFound, Signature: "Eicar-Test-Signature"}},
		{"stream: ClamTest.UNOFFICIAL FOUND", clamd.Reply{Name: "stream", Status: clamd.StatusFound, Signature: "ClamTest.UNOFFICIAL"}},
		{"stream: Heuristics.Encrypted.Zip FOUND", clamd.Reply{Name: "stream", Status: clamd.StatusFound, Signature: "Heuristics.Encrypted.Zip"}},
		{"stream: Eicar(44d88612fea8a8f36de82e1278abb02f:68) FOUND", clamd.Reply{Name: "stream", Status: clamd.StatusFound, Signature: "Eicar(44d88612fea8a8f36de82e1278abb02f:68)"}},
		{"/tmp/a: b: X FOUND", clamd.Reply{Name: "/tmp/a: b", Status: clamd.StatusFound, Signature: "X"}},
		{"INSTREAM size limit exceeded. ERROR", clamd.Reply{Status: clamd.StatusError, Message: "INSTREAM size limit exceeded."}},
		{"stream: Can't allocate memory ERROR", clamd.Reply{Name: "stream", Status: clamd.StatusError, Message: "Can't allocate memory"}},
		{"/x: lstat() failed: No such file or directory. ERROR", clamd.Reply{Name: "/x", Status: clamd.StatusError, Message: "lstat() failed: No such file or directory."}},
	} {
		got, err := clamd.ParseReply(tc.in)
		if err != nil {
			t.Errorf("ParseReply(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseReply(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestParseReplyRejects(t *testing.T) {
	for _, in := range []string{
		"", "OK", ": OK", "PONG", "UNKNOWN COMMAND", "COMMAND READ TIMED OUT",
		"stream:  FOUND", "FOUND", " FOUND", "stream: OK\x00", "stream: OK\n", " ERROR", "stream: \xff FOUND",
		strings.Repeat("a", 70<<10) + ": OK",
	} {
		if got, err := clamd.ParseReply(in); !errors.Is(err, clamd.ErrProtocol) {
			t.Errorf("ParseReply(%.40q) = %+v, %v; want ErrProtocol", in, got, err)
		}
	}
}

func TestReplyErr(t *testing.T) {
	r, err := clamd.ParseReply("INSTREAM size limit exceeded. ERROR")
	if err != nil {
		t.Fatal(err)
	}
	rerr := r.Err("INSTREAM")
	if !errors.Is(rerr, clamd.ErrSizeLimit) || !errors.Is(rerr, clamd.ErrReply) {
		t.Errorf("size-limit reply error %v: want ErrSizeLimit and ErrReply", rerr)
	}
	var re *clamd.ReplyError
	if !errors.As(rerr, &re) || re.Command != "INSTREAM" {
		t.Errorf("errors.As *ReplyError: %#v", re)
	}
	other := clamd.Reply{Status: clamd.StatusError, Message: "Can't allocate memory"}.Err("INSTREAM")
	if errors.Is(other, clamd.ErrSizeLimit) || !errors.Is(other, clamd.ErrReply) {
		t.Errorf("other error reply %v: want ErrReply only", other)
	}
	if err := (clamd.Reply{Status: clamd.StatusOK}).Err("INSTREAM"); err != nil {
		t.Errorf("OK reply has error %v", err)
	}
}

func TestSplitID(t *testing.T) {
	id, rest, err := clamd.SplitID("12: stream: OK")
	if err != nil || id != 12 || rest != "stream: OK" {
		t.Errorf("SplitID = %d, %q, %v", id, rest, err)
	}
	for _, in := range []string{"stream: OK", ": x", "1x: y", "12", "-1: x", "1234567890: x"} {
		if _, _, err := clamd.SplitID(in); !errors.Is(err, clamd.ErrProtocol) {
			t.Errorf("SplitID(%q) error %v, want ErrProtocol", in, err)
		}
	}
}

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want clamd.Version
	}{
		{"ClamAV 1.4.6", clamd.Version{Raw: "ClamAV 1.4.6", Engine: "1.4.6"}},
		{"ClamAV 1.4.6/42/Thu Jan  1 00:00:00 2025", clamd.Version{Raw: "ClamAV 1.4.6/42/Thu Jan  1 00:00:00 2025", Engine: "1.4.6", Signatures: "42", Date: "Thu Jan  1 00:00:00 2025"}},
		{"ClamAV 0.103.11/27513", clamd.Version{Raw: "ClamAV 0.103.11/27513", Engine: "0.103.11", Signatures: "27513"}},
	} {
		got, err := clamd.ParseVersion(tc.in)
		if err != nil {
			t.Errorf("ParseVersion(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseVersion(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
	for _, in := range []string{"", "ClamAV", "ClamAV ", "ClamAV /42", "ClamAV 1.4.6//x", "clamav 1.4.6", "PONG", "ClamAV 1 2"} {
		if got, err := clamd.ParseVersion(in); !errors.Is(err, clamd.ErrProtocol) {
			t.Errorf("ParseVersion(%q) = %+v, %v; want ErrProtocol", in, got, err)
		}
	}
}

func TestParseAddress(t *testing.T) {
	for in, want := range map[string]clamd.Address{
		"unix:/run/clamav/clamd.ctl": {Network: "unix", Addr: "/run/clamav/clamd.ctl"},
		"unix:rel.sock":              {Network: "unix", Addr: "rel.sock"},
		"tcp:127.0.0.1:3310":         {Network: "tcp", Addr: "127.0.0.1:3310"},
		"tcp:[::1]:3310":             {Network: "tcp", Addr: "[::1]:3310"},
		"tcp:clamd.internal:3310":    {Network: "tcp", Addr: "clamd.internal:3310"},
	} {
		got, err := clamd.ParseAddress(in)
		if err != nil {
			t.Errorf("ParseAddress(%q): %v", in, err)
			continue
		}
		if got != want {
			t.Errorf("ParseAddress(%q) = %+v, want %+v", in, got, want)
		}
		if got.String() != in {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), in)
		}
	}
	for _, in := range []string{"", "/run/clamd.sock", "unix:", "tcp:", "tcp:host", "tcp:host:0", "tcp:host:65536", "tcp::3310", "udp:x:1", "tcp:h:port"} {
		if _, err := clamd.ParseAddress(in); !errors.Is(err, clamd.ErrAddress) {
			t.Errorf("ParseAddress(%q) error %v, want ErrAddress", in, err)
		}
	}
}

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{
		"stream: OK", "stream: Eicar FOUND", "INSTREAM size limit exceeded. ERROR",
		"stream: x: y FOUND", "3: stream: OK", ": FOUND", " ERROR", "a: b ERROR", "PONG",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := clamd.ParseReply(s)
		if err != nil {
			if !errors.Is(err, clamd.ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		switch r.Status {
		case clamd.StatusOK:
			if r.Name == "" || s != r.Name+": OK" {
				t.Fatalf("OK reply %q parsed as %+v", s, r)
			}
		case clamd.StatusFound:
			if r.Name == "" || r.Signature == "" || !strings.HasSuffix(s, " FOUND") || !strings.Contains(s, r.Signature) {
				t.Fatalf("FOUND reply %q parsed as %+v", s, r)
			}
		case clamd.StatusError:
			if r.Message == "" || !strings.HasSuffix(s, " ERROR") {
				t.Fatalf("ERROR reply %q parsed as %+v", s, r)
			}
			if !errors.Is(r.Err("X"), clamd.ErrReply) {
				t.Fatal("error reply without ErrReply")
			}
		default:
			t.Fatalf("status %q", r.Status)
		}
	})
}

func FuzzSplitID(f *testing.F) {
	for _, s := range []string{"1: stream: OK", "12: PONG", "x: y", "", "007: z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, rest, err := clamd.SplitID(s)
		if err != nil {
			if !errors.Is(err, clamd.ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		if id < 0 || !strings.HasSuffix(s, ": "+rest) {
			t.Fatalf("SplitID(%q) = %d, %q", s, id, rest)
		}
	})
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"ClamAV 1.4.6", "ClamAV 1.4.6/42/Thu Jan  1 00:00:00 2025", "ClamAV /", "ClamAV a/b/c/d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := clamd.ParseVersion(s)
		if err != nil {
			if !errors.Is(err, clamd.ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		if v.Raw != s || v.Engine == "" || !strings.HasPrefix(s, "ClamAV "+v.Engine) {
			t.Fatalf("ParseVersion(%q) = %+v", s, v)
		}
	})
}
