package clamd_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyswarm/psengine/examples/clamav/clamd"
	"github.com/polyswarm/psengine/examples/clamav/internal/clamdtest"
)

// Reload sends RELOAD outside a session and expects RELOADING.
func TestReload(t *testing.T) {
	ctx := context.Background()
	fake := clamdtest.StartFake(t, clamdtest.FakeConfig{ReloadVersion: "ClamAV 1.4.6/43/Fri Jan  2 00:00:00 2025"})
	if err := clamd.Reload(ctx, fake.Address); err != nil {
		t.Fatal(err)
	}
	if fake.Reloads() != 1 {
		t.Errorf("%d reloads, want 1", fake.Reloads())
	}
	if v, err := dial(t, fake.Address).Version(ctx); err != nil || v.Signatures != "43" {
		t.Errorf("VERSION after the reload: %+v, %v", v, err)
	}

	fake.Close()
	if err := clamd.Reload(ctx, fake.Address); !errors.Is(err, clamd.ErrUnreachable) {
		t.Errorf("clamd gone: %v, want ErrUnreachable", err)
	}
	if err := clamd.Reload(ctx, clamd.Address{}); !errors.Is(err, clamd.ErrAddress) {
		t.Errorf("empty address: %v, want ErrAddress", err)
	}
}

// Replies other than RELOADING are errors of their kind; a daemon that
// never answers is given up with the context.
func TestReloadReplies(t *testing.T) {
	for _, tc := range []struct {
		reply string // "" answers nothing
		want  error
	}{
		{"UNKNOWN COMMAND\x00", clamd.ErrProtocol},
		{"Command invalid inside IDSESSION. ERROR\x00", clamd.ErrReply},
		{"RELOAD", clamd.ErrConnection}, // cut short: no NUL before the close
		{"", context.DeadlineExceeded},
	} {
		sock := filepath.Join(clamdtest.ShortTempDir(t), "s")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan struct{})
		go func() {
			defer close(served)
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			defer nc.Close()
			buf := make([]byte, 64)
			n, _ := nc.Read(buf)
			if string(buf[:n]) != "zRELOAD\x00" {
				return
			}
			if tc.reply == "" {
				_, _ = nc.Read(buf) // until the client gives up
				return
			}
			_, _ = nc.Write([]byte(tc.reply))
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err = clamd.Reload(ctx, clamd.Address{Network: "unix", Addr: sock})
		cancel()
		if !errors.Is(err, tc.want) {
			t.Errorf("reply %q: %v, want %v", tc.reply, err, tc.want)
		}
		if said := strings.TrimSuffix(strings.TrimRight(tc.reply, "\x00"), " ERROR"); tc.reply != "" && tc.want != clamd.ErrConnection && !strings.Contains(err.Error(), said) {
			t.Errorf("reply %q: the error does not quote it: %v", tc.reply, err)
		}
		ln.Close()
		<-served
	}
}

// A real clamd reloads a new .cud database: VERSION names its version.
func TestRealClamdReload(t *testing.T) {
	cfg := clamdtest.StandardSignatures(t)
	cfg.CVDVersion = 42
	d := clamdtest.StartDaemon(t, cfg)
	cfg.CVDVersion = 43
	d.ReplaceDatabase(t, cfg)
	ctx := context.Background()
	if err := clamd.Reload(ctx, d.Address); err != nil {
		t.Fatal(err)
	}
	c := dial(t, d.Address)
	deadline := time.Now().Add(30 * time.Second) // a bound: it takes milliseconds
	for {
		v, err := c.Version(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v.Signatures == "43" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("VERSION still %q after the reload; clamd log:\n%s", v.Raw, d.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
